"""S3 and S3-compatible storage (MinIO): the target, its clients and its poll.

A target polls one bucket through collectors, one module each in this package:

* ``canary`` (on): PUT/GET/HEAD/DELETE of a small object every poll; the liveness
  check, whose failure to reach or use the bucket fails the poll (``sparki_up`` 0);
* ``cloudwatch`` (on for AWS, off for other endpoints): request and storage metrics;
* ``minio`` (off; needs MinIO's metrics token): MinIO's own bucket metrics;
* ``inventory`` (off): bytes and objects per storage class by listing the bucket;
* ``multipart`` (on): incomplete multipart uploads (count, age, bytes where known);
* ``lifecycle`` (on): whether an enabled lifecycle rule covers each named prefix;
* ``cost`` (on): sizes times the configured prices.

**The collector interface.** A collector module defines ``Collector``, a subclass of
:class:`~exporter.adapters.s3.context.S3Collector`, and ``families(target, bucket,
part)``. The target makes each enabled collector once with the target's
:class:`~exporter.adapters.s3.context.S3Context` (``await ctx.call(fn)`` runs a boto3
call on :data:`SHARED_THREADS` within the target's ``max_workers``; ``ctx.s3`` and
``ctx.cloudwatch`` are the clients, ``ctx.config`` the config, ``ctx.usage`` the
counters and sizes several collectors share). Each poll runs every enabled
collector's ``collect()`` concurrently under the poll deadline (the core's), then asks
each for its immutable ``part()``; the snapshot keeps ``(name, part)`` pairs and
``families`` hands each part back to its module. Only enabled collectors are imported
(``importlib``), so a switched-off collector costs nothing and exports nothing.

**Failures.** A collector that raises degrades alone: sparki_collector_success 0 for
it, one log line per change, everything else exported, the poll succeeds. Data
sources (CloudWatch, MinIO, the inventory) keep today's sparki_capability and
sparki_s3_source_errors_total. The canary's PollError fails the poll, with its
failed attempts still exported. With the canary off, a poll fails only when every
enabled request-metrics source (CloudWatch, MinIO) failed.

Which collectors run: the target's ``collectors:`` switches (and the older
``enabled`` keys of the ``canary``/``cloudwatch``/``minio``/``inventory`` sections),
else the adapter-wide ``--[no-]collector.X`` switches, else the catalog's default.

boto3 is synchronous: its clients are made once per target and called on one thread
pool shared by every S3 target, with connect/read timeouts below the poll timeout and
no retries for the canary, so the event loop never blocks and a hung endpoint costs
one deadline. Results of a call that finishes after its poll was abandoned are still
recorded (a PUT that landed late still gets deleted).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ...adapter import PollError, Reason
from ...collector import CollectorErrors, CollectorRun, enabled
from ...collector import families as collector_families
from ...config import GlobalConfig
from ...errtext import without_addresses
from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .catalog import COLLECTORS
from .config import S3Config, from_env
from .context import SHARED_THREADS, S3Collector, S3Context
from .errors import PROBE_OPERATIONS, PROBE_REASONS, classify, probe_reason
from .usage import UsagePart, storage_families, traffic_families

__all__ = [
    "PROBE_OPERATIONS",
    "PROBE_REASONS",
    "SHARED_THREADS",
    "S3Config",
    "S3Snapshot",
    "S3Target",
    "classify",
    "families",
    "from_env",
    "probe_reason",
]

# boto3 and botocore ship no type information; they are used as Any on purpose.
_boto3: Any = importlib.import_module("boto3")
_bconfig: Any = importlib.import_module("botocore.config")
_bhandlers: Any = importlib.import_module("botocore.handlers")
_bsession: Any = importlib.import_module("botocore.session")
_bloaders: Any = importlib.import_module("botocore.loaders")

# One model loader for every target. Each botocore session otherwise parses its own copy
# of the S3 and CloudWatch service models and endpoint rules: measured here, 13.4 MB per
# target with its own loader, 1.4 MB with this one. The loader only caches read-only
# JSON; credentials stay per session.
_SHARED_LOADER: Any = None
_SHARED_LOADER_LOCK = threading.Lock()


def _botocore_session() -> Any:
    global _SHARED_LOADER
    with _SHARED_LOADER_LOCK:
        if _SHARED_LOADER is None:
            _SHARED_LOADER = _bloaders.create_loader()
        loader = _SHARED_LOADER
    session = _bsession.get_session()
    session.register_component("data_loader", loader)
    return session


log = logging.getLogger("sparki.s3")
# botocore's debug logging prints request headers (the access key id is in them).
for _name in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Sources of request metrics: with the canary off, the poll fails when all of them fail.
REQUEST_SOURCES = ("cloudwatch", "minio")


def collector_module(name: str) -> Any:
    """A collector's module, imported on first use (only enabled ones ever are)."""
    return importlib.import_module(f"{__package__}.{name}")


@dataclass(frozen=True, slots=True)
class S3Snapshot:
    """Everything one poll learned, immutable, ready to be turned into families."""

    target: str
    bucket: str
    parts: tuple[tuple[str, Any], ...]  # (collector name, its part), enabled ones only
    usage: UsagePart
    capabilities: tuple[tuple[str, bool], ...]
    source_errors: tuple[tuple[str, str, int], ...]
    runs: tuple[CollectorRun, ...]


class S3Target:
    """Polls one bucket; keeps the boto3 clients and the collectors across polls."""

    def __init__(self, config: S3Config, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        self.interval = global_config.interval_for(config)
        self.enabled = enabled(
            COLLECTORS, global_config.collectors_for("s3"), config.collector_switches()
        )
        ctx = self.ctx = S3Context(config, self.timeout)
        ctx.connect_timeout = min(
            config.connect_timeout or max(0.2, min(5.0, 0.3 * self.timeout)), 0.9 * self.timeout
        )
        ctx.read_timeout = min(
            config.read_timeout or max(0.3, min(10.0, 0.5 * self.timeout)), 0.9 * self.timeout
        )
        SHARED_THREADS.attach()
        self._clients_lock = asyncio.Lock()
        self.errors = CollectorErrors("s3", config.name)
        # In the catalog's order; every collector's part is taken after all collected.
        self.collectors: dict[str, S3Collector] = {
            spec.name: collector_module(spec.name).Collector(ctx)
            for spec in COLLECTORS
            if spec.name in self.enabled
        }

    # -- clients --------------------------------------------------------------------------

    def _make_clients(self, cloudwatch_on: bool) -> tuple[Any, Any]:
        cfg = self.config
        session = _boto3.session.Session(
            botocore_session=_botocore_session(),
            aws_access_key_id=cfg.access_key_id.get_secret_value() if cfg.access_key_id else None,
            aws_secret_access_key=(
                cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None
            ),
            aws_session_token=cfg.session_token.get_secret_value() if cfg.session_token else None,
            region_name=cfg.region,
        )
        region = cfg.region or session.region_name or "us-east-1"
        path_style = cfg.path_style if cfg.path_style is not None else bool(cfg.endpoint_url)
        verify: bool | str = cfg.ca_file or cfg.verify_tls

        def client_config(attempts: int, **extra: Any) -> Any:
            kwargs: dict[str, Any] = {
                "region_name": region,
                "connect_timeout": self.ctx.connect_timeout,
                "read_timeout": self.ctx.read_timeout,
                # total_max_attempts counts the first try; max_attempts would add one.
                "retries": {"total_max_attempts": attempts, "mode": "standard"},
                "max_pool_connections": cfg.max_workers,
                "user_agent_extra": "sparki-exporter",
                **extra,
            }
            try:
                # Flexible checksums (botocore >= 1.36) break older MinIO and moto; the
                # canary compares contents itself.
                return _bconfig.Config(
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    **kwargs,
                )
            except TypeError:
                return _bconfig.Config(**kwargs)

        s3 = session.client(
            "s3",
            endpoint_url=cfg.endpoint_url,
            config=client_config(1, s3={"addressing_style": "path" if path_style else "auto"}),
            verify=verify,
        )
        # "Expect: 100-continue" makes a PUT wait up to a second for an interim answer
        # before sending its body: pointless for a 1 KiB canary, and it would let a hung
        # endpoint cost more than read_timeout.
        s3.meta.events.unregister("before-call.s3", _bhandlers.add_expect_header)
        cloudwatch = None
        if cloudwatch_on:
            cw_config = client_config(cfg.cloudwatch.max_attempts)
            if cfg.cloudwatch.region:
                cw_config = cw_config.merge(_bconfig.Config(region_name=cfg.cloudwatch.region))
            cloudwatch = session.client(
                "cloudwatch",
                endpoint_url=cfg.cloudwatch.endpoint_url,
                config=cw_config,
                verify=verify,
            )
        return s3, cloudwatch

    async def _clients(self) -> None:
        async with self._clients_lock:
            if self.ctx.s3 is None:
                on = "cloudwatch" in self.collectors
                self.ctx.s3, self.ctx.cloudwatch = await self.ctx.call(
                    lambda: self._make_clients(on)
                )

    # -- lifecycle ------------------------------------------------------------------------

    async def reset(self) -> None:
        """boto3 drops broken connections itself; collectors renew their own sessions."""
        for collector in self.collectors.values():
            reset = getattr(collector, "reset", None)
            if reset is not None:
                await reset()

    async def close(self) -> None:
        """Best effort: let each collector clean up (canary objects first), then release."""
        for collector in self.collectors.values():
            try:
                await collector.close()
            except Exception:  # noqa: S110 (closing is best effort)
                pass
        for client in (self.ctx.s3, self.ctx.cloudwatch):
            if client is not None and hasattr(client, "close"):
                try:
                    client.close()
                except Exception:  # noqa: S110 (closing is best effort)
                    pass
        for call in list(self.ctx.inflight):
            call.cancel()  # only calls still queued; running ones end by their timeouts
        SHARED_THREADS.detach()

    # -- poll -----------------------------------------------------------------------------

    async def poll(self) -> S3Snapshot:
        try:
            await self._clients()
        except Exception as exc:
            raise classify(exc) from None
        outcomes = await asyncio.gather(
            *(self._collect(name, c) for name, c in self.collectors.items())
        )
        runs = tuple(run for run, _ in outcomes)
        failures = {run.name: exc for run, exc in outcomes if exc is not None}
        # Data sources log through ctx.source_result; the canary through the poll error.
        self.errors.report(
            r for r in runs if r.name != "canary" and self.collectors[r.name].SOURCE is None
        )
        if "canary" in failures:
            failed = failures["canary"]
            error = failed if isinstance(failed, PollError) else classify(failed)
            # The target is down, but its failed canary attempts are data: export
            # them now, so the failure ratio rises while the storage is unusable.
            error.snapshot = self._snapshot(runs)
            raise error
        if "canary" not in self.collectors:
            sources = [n for n in REQUEST_SOURCES if n in self.collectors]
            if sources and all(n in failures for n in sources):
                raise classify(failures[sources[0]])
        return self._snapshot(runs)

    async def _collect(
        self, name: str, collector: S3Collector
    ) -> tuple[CollectorRun, BaseException | None]:
        start = time.perf_counter()
        try:
            await collector.collect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            text = without_addresses(classify(exc).message)[:300]
            return CollectorRun(name, False, time.perf_counter() - start, text), exc
        return CollectorRun(name, True, time.perf_counter() - start), None

    # -- snapshot -------------------------------------------------------------------------

    def _snapshot(self, runs: tuple[CollectorRun, ...] = ()) -> S3Snapshot:
        ctx = self.ctx
        capabilities = [cap for c in self.collectors.values() for cap in c.capabilities()]
        sources = [c.SOURCE for c in self.collectors.values() if c.SOURCE is not None]
        return S3Snapshot(
            target=self.config.name,
            bucket=self.config.bucket,
            parts=tuple((name, c.part()) for name, c in self.collectors.items()),
            usage=ctx.usage.part(),
            capabilities=tuple(capabilities),
            source_errors=tuple(
                (source, reason, ctx.source_errors[(source, reason)])
                for source in sources
                for reason in [r.value for r in Reason]
            ),
            runs=runs,
        )


# --- snapshot -> families ----------------------------------------------------------------


def families(snap: S3Snapshot) -> list[Metric]:
    t = snap.target
    out: list[Metric] = []
    # Shared by several collectors, and always declared (empty when none feeds them),
    # as before collectors existed: rules that read them find the names in a scrape.
    out += traffic_families(t, snap.usage)
    out += storage_families(t, snap.usage)
    for name, part in snap.parts:
        out += collector_module(name).families(t, snap.bucket, part)
    if snap.source_errors:
        source_errors = CounterMetricFamily(
            "sparki_s3_source_errors",
            "Failed reads of CloudWatch or MinIO metrics or of the inventory listing, by reason",
            labels=["target", "source", "reason"],
        )
        for source, reason, count in snap.source_errors:
            source_errors.add_metric([t, source, reason], count)
        out.append(source_errors)
    if snap.capabilities:
        cap = GaugeMetricFamily(
            "sparki_capability",
            "1 when an optional data source is usable, 0 when it is not "
            "(the log says why and how to fix it)",
            labels=["adapter", "target", "capability"],
        )
        for name, ok in snap.capabilities:
            cap.add_metric(["s3", t, name], 1 if ok else 0)
        out.append(cap)
    out += collector_families("s3", t, snap.runs)
    return out


def _target(config: Any, global_config: GlobalConfig) -> S3Target:
    return S3Target(config, global_config)
