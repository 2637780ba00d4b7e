"""The ``minio`` collector: MinIO's own Prometheus metrics, on the sparki_s3_* names.

MinIO serves bucket-level request, error, traffic and usage metrics behind a bearer
token (``mc admin prometheus generate``); :mod:`.minio_format` parses the exposition
strictly and maps it. Off by default (it needs the token, or a public endpoint):
``minio: {enabled: true}`` or ``collectors: {minio: true}``. A failure degrades this
collector alone (``sparki_capability{capability="minio_metrics"}`` 0,
sparki_s3_source_errors_total); nothing of a half-read body is applied.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp

from ...adapter import Reason
from ...metrics import Metric
from .context import S3Collector, S3Context
from .errors import SourceError
from .minio_format import CounterTracker, bucket_reading, parse_exposition


class Collector(S3Collector):
    """MinIO's counters per node (restarts and node switches handled) and the session."""

    SOURCE = "minio"

    def __init__(self, ctx: S3Context) -> None:
        super().__init__(ctx)
        self.minio_tracker = CounterTracker()
        self.http: aiohttp.ClientSession | None = None
        for name in sorted(ctx.config.minio_buckets() or ()):
            ctx.usage.init_counters(name)

    def capabilities(self) -> list[tuple[str, bool]]:
        return [("minio_metrics", self.ctx.source_ok.get("minio", False))]

    async def reset(self) -> None:
        """A new HTTP session after a failed poll (boto3 renews its own connections)."""
        http, self.http = self.http, None
        if http is not None and not http.closed:
            await http.close()

    async def close(self) -> None:
        await self.reset()

    def _minio_urls(self) -> tuple[list[str], str | None]:
        m = self.ctx.config.minio
        bases = list(m.node_urls) or [str(self.ctx.config.endpoint_url)]
        if m.version == "v2":
            return [b + (m.api_path or "/minio/v2/metrics/bucket") for b in bases], None
        names = sorted(self.ctx.config.minio_buckets() or ())
        api = (m.api_path or "/minio/metrics/v3/bucket/api") + "?buckets=" + ",".join(names)
        usage = bases[0] + (m.usage_path or "/minio/metrics/v3/cluster/usage/buckets")
        return [b + api for b in bases], usage

    def _http_session(self) -> aiohttp.ClientSession:
        if self.http is None or self.http.closed:
            m = self.ctx.config.minio
            ssl_arg: ssl.SSLContext | bool = True
            if self.ctx.config.ca_file:
                ssl_arg = ssl.create_default_context(cafile=self.ctx.config.ca_file)
            elif not (m.verify_tls and self.ctx.config.verify_tls):
                ssl_arg = False
            self.http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=self.ctx.read_timeout + self.ctx.connect_timeout,
                    connect=self.ctx.connect_timeout,
                    sock_read=self.ctx.read_timeout,
                ),
                connector=aiohttp.TCPConnector(ssl=ssl_arg, limit=4),
            )
        return self.http

    async def _fetch(self, url: str) -> str:
        headers = {"Accept": "text/plain"}
        token = self.ctx.config.minio.bearer_token
        if token is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        async with self._http_session().get(url, headers=headers, allow_redirects=False) as r:
            if r.status in (401, 403):
                raise SourceError(
                    Reason.AUTH,
                    f"MinIO metrics endpoint answered HTTP {r.status}: check the bearer token "
                    "(mc admin prometheus generate)",
                )
            if r.status != 200:
                raise SourceError(
                    Reason.PROTOCOL,
                    f"MinIO metrics endpoint answered HTTP {r.status}; check minio.version "
                    "and the URL",
                )
            body = await r.content.read(64 * 1024 * 1024 + 1)
            if len(body) > 64 * 1024 * 1024:
                raise SourceError(Reason.PROTOCOL, "MinIO metrics body larger than 64 MiB")
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError:
                raise SourceError(Reason.PROTOCOL, "MinIO metrics body is not UTF-8") from None

    async def collect(self) -> None:
        try:
            await self._collect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.ctx.source_result("minio", exc)
            raise
        self.ctx.source_result("minio", None)

    async def _collect(self) -> None:
        api_urls, usage_url = self._minio_urls()
        buckets = self.ctx.config.minio_buckets()
        bodies = await asyncio.gather(*(self._fetch(u) for u in api_urls))
        usage_body = await self._fetch(usage_url) if usage_url else None
        readings = [
            (url, bucket_reading(parse_exposition(body), buckets))
            for url, body in zip(api_urls, bodies, strict=True)
        ]
        usage = bucket_reading(parse_exposition(usage_body), buckets) if usage_body else None
        # Parsed completely: only now is anything applied.
        sizes: dict[str, float] = {}
        objects: dict[str, float] = {}
        for url, reading in [*readings, *([("usage", usage)] if usage else [])]:
            for bucket in reading.buckets:
                self.ctx.usage.init_counters(bucket)
            self.minio_tracker.apply(url, reading.counters)
            for bucket, size in reading.sizes.items():
                sizes[bucket] = max(sizes.get(bucket, 0.0), size)
            for bucket, count in reading.objects.items():
                objects[bucket] = max(objects.get(bucket, 0.0), count)
        shared = self.ctx.usage
        dest = {
            "requests": shared.requests,
            "errors": shared.request_errors,
            "bytes": shared.transferred,
        }
        for (kind, bucket, key), total in self.minio_tracker.totals.items():
            dest[kind][(bucket, key)] = total
        # MinIO's usage is not split by storage class: it is reported as StandardStorage.
        # Usage appears only once MinIO's scanner has run; until then the last is kept.
        if sizes:
            self.ctx.usage.sizes = {(b, "StandardStorage"): v for b, v in sizes.items()}
        if objects:
            self.ctx.usage.objects = objects


def families(t: str, bucket: str, part: None) -> list[Metric]:
    """Its data is in the shared usage families (requests, sizes): nothing of its own."""
    return []
