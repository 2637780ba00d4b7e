"""The ``multipart`` collector: incomplete multipart uploads, which S3 bills until aborted.

The storage design uploads large artifacts by multipart; an upload that is started
and never completed nor aborted (a killed build, a crashed client) keeps its parts,
invisible in listings of objects, and billed. This collector lists them
(ListMultipartUploads, 1,000 per page, up to ``multipart.max_uploads``) and exports
their count and the age of the oldest; their bytes need one ListParts per upload, so
they are summed only while there are at most ``multipart.parts_uploads`` uploads, and
otherwise not exported (unknown, and logged once) rather than under-reported.

The scan runs in the background every ``multipart.interval`` (default 5 minutes), so
a long listing never costs a poll its deadline; the age is computed at every poll
from the oldest upload's start, so it grows between scans. A refused or failing scan
degrades this collector alone (its metrics vanish, sparki_collector_success 0).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from ...adapter import PollError
from ...metrics import GaugeMetricFamily, Metric
from .context import Periodic, S3Collector, S3Context
from .errors import classify, client_error

PAGE = 1000  # ListMultipartUploads / ListParts page size, S3's maximum
MAX_PART_PAGES = 10  # 10,000 parts: S3's limit per upload


@dataclass(frozen=True, slots=True)
class Scan:
    uploads: int
    oldest: float | None  # epoch seconds the oldest upload was initiated
    bytes: float | None  # None: not every upload's parts were listed
    truncated: bool  # stopped at max_uploads: count and age are lower bounds


@dataclass(frozen=True, slots=True)
class MultipartPart:
    uploads: int
    oldest_age: float
    bytes: float | None


class Collector(S3Collector):
    """The background scan and the newest result."""

    def __init__(self, ctx: S3Context) -> None:
        super().__init__(ctx)
        self.periodic: Periodic[Scan] = Periodic(ctx.config.multipart.interval)
        self.scan: Scan | None = None
        self.failure: PollError | None = None

    async def collect(self) -> None:
        finished = self.periodic.step(self._scan)
        if finished is not None:
            error = finished.exception()
            if error is None:
                self.scan, self.failure = finished.result(), None
                self._report(self.scan)
            else:
                self.scan, self.failure = None, classify(error)
        if self.failure is not None:
            raise PollError(self.failure.reason, self.failure.message)

    def part(self) -> MultipartPart | None:
        scan = self.scan
        if scan is None:
            return None
        age = 0.0 if scan.oldest is None else max(0.0, self.ctx.clock() - scan.oldest)
        return MultipartPart(scan.uploads, age, scan.bytes)

    async def close(self) -> None:
        await self.periodic.close()

    def _report(self, scan: Scan) -> None:
        cfg = self.ctx.config.multipart
        self.ctx.report(
            "multipart:truncated",
            "truncated" if scan.truncated else None,
            "more incomplete multipart uploads than multipart.max_uploads: their count "
            "and age are lower bounds"
            if scan.truncated
            else "incomplete multipart uploads listed completely again",
            max_uploads=cfg.max_uploads,
        )
        self.ctx.report(
            "multipart:bytes",
            "unknown" if scan.bytes is None else None,
            "bytes of incomplete multipart uploads not exported: more uploads than "
            "multipart.parts_uploads (one ListParts request each)"
            if scan.bytes is None
            else "bytes of incomplete multipart uploads known again",
            uploads=scan.uploads,
            parts_uploads=cfg.parts_uploads,
        )

    async def _scan(self) -> Scan:
        cfg = self.ctx.config
        s3 = self.ctx.s3
        uploads: list[tuple[str, str, float]] = []  # key, upload id, initiated
        kwargs: dict[str, Any] = {"Bucket": cfg.bucket, "MaxUploads": PAGE}
        truncated = False
        while True:
            page = await self.ctx.call(partial(s3.list_multipart_uploads, **kwargs))
            for upload in page.get("Uploads") or []:
                initiated = upload.get("Initiated")
                ts = initiated.timestamp() if isinstance(initiated, datetime) else None
                uploads.append(
                    (str(upload.get("Key")), str(upload.get("UploadId")), ts or self.ctx.clock())
                )
            more = bool(page.get("IsTruncated"))
            if len(uploads) >= cfg.multipart.max_uploads:
                truncated = more or len(uploads) > cfg.multipart.max_uploads
                del uploads[cfg.multipart.max_uploads :]
                break
            key, upload_id = page.get("NextKeyMarker"), page.get("NextUploadIdMarker")
            if not more or not (key or upload_id):
                break
            kwargs["KeyMarker"], kwargs["UploadIdMarker"] = key or "", upload_id or ""
        size: float | None = None
        if not truncated and len(uploads) <= cfg.multipart.parts_uploads:
            size = 0.0
            for key, upload_id, _ in uploads:
                size += await self._parts_bytes(key, upload_id)
        oldest = min((ts for _, _, ts in uploads), default=None)
        return Scan(len(uploads), oldest, size, truncated)

    async def _parts_bytes(self, key: str, upload_id: str) -> float:
        """Bytes of one upload's parts; 0 when it completed or was aborted meanwhile."""
        s3, bucket = self.ctx.s3, self.ctx.config.bucket
        total = 0.0
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "UploadId": upload_id,
            "MaxParts": PAGE,
        }
        for _ in range(MAX_PART_PAGES):
            try:
                page = await self.ctx.call(partial(s3.list_parts, **kwargs))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                info = client_error(exc)
                if info is not None and info[0] == "NoSuchUpload":
                    return 0.0
                raise
            total += sum(float(p.get("Size") or 0) for p in page.get("Parts") or [])
            marker = page.get("NextPartNumberMarker")
            if not page.get("IsTruncated") or not marker:
                break
            kwargs["PartNumberMarker"] = marker
        return total


def families(t: str, bucket: str, part: MultipartPart | None) -> list[Metric]:
    if part is None:
        return []
    uploads = GaugeMetricFamily(
        "sparki_s3_multipart_uploads",
        "Incomplete multipart uploads in the bucket (started, never completed nor "
        "aborted; their parts are billed)",
        labels=["target", "bucket"],
    )
    uploads.add_metric([t, bucket], part.uploads)
    oldest = GaugeMetricFamily(
        "sparki_s3_multipart_oldest_upload_age_seconds",
        "Age of the oldest incomplete multipart upload; 0 when there is none",
        labels=["target", "bucket"],
    )
    oldest.add_metric([t, bucket], part.oldest_age)
    out: list[Metric] = [uploads, oldest]
    if part.bytes is not None:
        size = GaugeMetricFamily(
            "sparki_s3_multipart_upload_bytes",
            "Bytes in the parts of incomplete multipart uploads (absent when there are "
            "more uploads than multipart.parts_uploads)",
            labels=["target", "bucket"],
        )
        size.add_metric([t, bucket], part.bytes)
        out.append(size)
    return out
