"""The ``inventory`` collector: bytes and objects per storage class by listing the bucket.

For S3 services that have neither CloudWatch storage metrics nor MinIO's usage metrics
(Ceph RGW, Garage, SeaweedFS, a local test server), and for objects per storage class,
which CloudWatch does not report (its NumberOfObjects is for all storage types
together): the design archives old logs to Glacier, and this shows how many went. A
listing is one LIST request per 1,000 objects, so it runs in the background on its
own slow schedule (``inventory.interval``) and never holds up a poll; off by default.
Past ``inventory.max_objects`` nothing is exported (a partial sum would be wrong).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from ...adapter import PollError
from ...metrics import Metric
from .context import Periodic, S3Collector, S3Context

# ListObjectsV2 StorageClass -> the CloudWatch StorageType that the price table uses.
LISTING_STORAGE_TYPES = {
    "STANDARD": "StandardStorage",
    "STANDARD_IA": "StandardIAStorage",
    "ONEZONE_IA": "OneZoneIAStorage",
    "REDUCED_REDUNDANCY": "ReducedRedundancyStorage",
    "INTELLIGENT_TIERING": "IntelligentTieringFAStorage",
    "GLACIER": "GlacierStorage",
    "GLACIER_IR": "GlacierInstantRetrievalStorage",
    "DEEP_ARCHIVE": "DeepArchiveStorage",
}

Listing = tuple[dict[str, float], dict[str, float]] | None  # bytes, objects by class


class Collector(S3Collector):
    """The background listing and its schedule."""

    SOURCE = "inventory"

    def __init__(self, ctx: S3Context) -> None:
        super().__init__(ctx)
        self.periodic: Periodic[Listing] = Periodic(ctx.config.inventory.interval)
        self.failure: PollError | None = None  # of the newest finished listing

    async def collect(self) -> None:
        """Apply a listing that finished since the last poll; start the next when due.

        Raises while the newest finished listing failed (counted and logged once, when
        it finished), so the collector stays failed until a listing succeeds.
        """
        self._apply(self.periodic.step(self._list_bucket))
        if self.failure is not None:
            raise PollError(self.failure.reason, self.failure.message)

    def _apply(self, finished: asyncio.Task[Listing] | None) -> None:
        if finished is None:
            return
        error = finished.exception()
        self.failure = self.ctx.source_result("inventory", error)
        if error is not None:
            return
        result = finished.result()
        cfg = self.ctx.config
        if result is None:
            self.ctx.report(
                "inventory:truncated",
                "truncated",
                "bucket has more objects than inventory.max_objects; its size is not "
                "exported (raise the limit, or use CloudWatch or MinIO metrics)",
                max_objects=cfg.inventory.max_objects,
            )
            return
        self.ctx.report("inventory:truncated", None, "bucket listing complete again")
        sizes, counts = result
        usage = self.ctx.usage
        usage.sizes = {(cfg.bucket, k): v for k, v in sizes.items()}
        usage.objects = {cfg.bucket: float(sum(counts.values()))}
        usage.class_objects = {(cfg.bucket, k): v for k, v in counts.items()}

    def capabilities(self) -> list[tuple[str, bool]]:
        if "inventory" not in self.ctx.source_ok:
            return []  # no listing has finished yet
        return [("inventory", self.ctx.source_ok["inventory"])]

    async def close(self) -> None:
        await self.periodic.close()

    async def _list_bucket(self) -> Listing:
        """Bytes and objects by storage type; None past max_objects."""
        cfg = self.ctx.config
        s3 = self.ctx.s3
        sizes: dict[str, float] = {}
        counts: dict[str, float] = {}
        count = 0
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": cfg.bucket, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page: dict[str, Any] = await self.ctx.call(partial(s3.list_objects_v2, **kwargs))
            for item in page.get("Contents", []):
                key = str(item.get("Key", ""))
                if cfg.canary_enabled and key.startswith(cfg.canary.prefix):
                    continue  # the canary's own objects live for a second
                storage = str(item.get("StorageClass") or "STANDARD")
                name = LISTING_STORAGE_TYPES.get(storage, storage)
                sizes[name] = sizes.get(name, 0.0) + float(item.get("Size", 0))
                counts[name] = counts.get(name, 0.0) + 1.0
                count += 1
            if count > cfg.inventory.max_objects:
                return None
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return sizes, counts


def families(t: str, bucket: str, part: None) -> list[Metric]:
    """Its data is in the shared storage families (sizes, objects per class)."""
    return []
