"""The ``cost`` collector: stored bytes times the configured price of their storage class.

It reads no server: it prices the sizes CloudWatch, MinIO or the inventory reported
(in the context's usage) with the target's ``prices`` table (dollars per GB-month of
2^30 bytes by CloudWatch StorageType; S3 Standard's list price by default). A storage
class without a price is left out and logged once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...metrics import GaugeMetricFamily, Metric
from .context import S3Collector

BYTES_PER_GB = float(2**30)  # AWS bills storage in binary gigabytes


@dataclass(frozen=True, slots=True)
class CostPart:
    costs: tuple[tuple[str, str, float], ...]  # bucket, storage class, dollars/month


class Collector(S3Collector):
    """Prices the sizes when the snapshot is taken, after every other collector ran."""

    def part(self) -> CostPart:
        out = []
        for (bucket, storage_class), size in sorted(self.ctx.usage.sizes.items()):
            price = self.ctx.config.prices.get(storage_class)
            if price is None:
                self.ctx.report(
                    f"price:{storage_class}",
                    "no_price",
                    "no price configured for a storage class; its cost is not exported",
                    storage_class=storage_class,
                )
                continue
            out.append((bucket, storage_class, size / BYTES_PER_GB * price))
        return CostPart(tuple(out))


def families(t: str, bucket: str, part: CostPart) -> list[Metric]:
    cost = GaugeMetricFamily(
        "sparki_s3_storage_cost_dollars_per_month",
        "Bucket size times the configured price per GB-month of its storage class",
        labels=["target", "bucket", "storage_class"],
    )
    for name, storage_class, value in part.costs:
        cost.add_metric([t, name, storage_class], value)
    return [cost]
