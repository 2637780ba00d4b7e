"""A bucket's traffic and storage as several collectors fill it, and its families.

CloudWatch and MinIO both count requests, errors and bytes transferred (one target
has one of them, never both: the config refuses it); CloudWatch, MinIO and the
inventory listing all report sizes and object counts; the cost collector prices the
sizes. They meet here, in :class:`Usage`, which the target's context holds, so that
the families keep one name whichever collector fed them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric

REQUEST_OPERATIONS = ("get", "put", "delete", "head", "post", "list", "select", "other")
ERROR_CLASSES = ("4xx", "5xx")
DIRECTIONS = ("download", "upload")


@dataclass
class Usage:
    """Mutable, owned by one target; :meth:`part` copies it for a snapshot."""

    # (bucket, label) -> total, counted across polls
    requests: dict[tuple[str, str], float] = field(default_factory=dict)
    request_errors: dict[tuple[str, str], float] = field(default_factory=dict)
    transferred: dict[tuple[str, str], float] = field(default_factory=dict)
    sizes: dict[tuple[str, str], float] = field(default_factory=dict)  # (bucket, class)
    objects: dict[str, float] = field(default_factory=dict)
    class_objects: dict[tuple[str, str], float] = field(default_factory=dict)  # (bucket, class)

    def init_counters(self, bucket: str) -> None:
        """Every counter of a bucket from 0, so a first request is an increase."""
        for op in REQUEST_OPERATIONS:
            self.requests.setdefault((bucket, op), 0.0)
        for cls in ERROR_CLASSES:
            self.request_errors.setdefault((bucket, cls), 0.0)
        for direction in DIRECTIONS:
            self.transferred.setdefault((bucket, direction), 0.0)

    def part(self) -> UsagePart:
        return UsagePart(
            requests=tuple((b, op, v) for (b, op), v in sorted(self.requests.items())),
            request_errors=tuple((b, c, v) for (b, c), v in sorted(self.request_errors.items())),
            transferred=tuple((b, d, v) for (b, d), v in sorted(self.transferred.items())),
            sizes=tuple((b, s, v) for (b, s), v in sorted(self.sizes.items())),
            objects=tuple(sorted(self.objects.items())),
            class_objects=tuple((b, s, v) for (b, s), v in sorted(self.class_objects.items())),
        )


@dataclass(frozen=True, slots=True)
class UsagePart:
    requests: tuple[tuple[str, str, float], ...]  # bucket, operation, total
    request_errors: tuple[tuple[str, str, float], ...]  # bucket, class, total
    transferred: tuple[tuple[str, str, float], ...]  # bucket, direction, bytes
    sizes: tuple[tuple[str, str, float], ...]  # bucket, storage class, bytes
    objects: tuple[tuple[str, float], ...]
    class_objects: tuple[tuple[str, str, float], ...]  # bucket, storage class, objects


def traffic_families(t: str, part: UsagePart) -> list[Metric]:
    requests = CounterMetricFamily(
        "sparki_s3_requests",
        "Requests on the bucket from CloudWatch request metrics or MinIO; summing "
        "all operations gives all requests",
        labels=["target", "bucket", "operation"],
    )
    for bucket, op, value in part.requests:
        requests.add_metric([t, bucket, op], value)
    request_errors = CounterMetricFamily(
        "sparki_s3_request_errors",
        "Requests on the bucket that failed, by HTTP status class",
        labels=["target", "bucket", "class"],
    )
    for bucket, cls, value in part.request_errors:
        request_errors.add_metric([t, bucket, cls], value)
    transferred = CounterMetricFamily(
        "sparki_s3_transferred_bytes",
        "Bytes downloaded from and uploaded to the bucket",
        labels=["target", "bucket", "direction"],
    )
    for bucket, direction, value in part.transferred:
        transferred.add_metric([t, bucket, direction], value)
    return [requests, request_errors, transferred]


def storage_families(t: str, part: UsagePart) -> list[Metric]:
    size = GaugeMetricFamily(
        "sparki_s3_bucket_size_bytes",
        "Bytes stored, by storage class (CloudWatch's daily BucketSizeBytes, MinIO usage, "
        "or the inventory listing)",
        labels=["target", "bucket", "storage_class"],
    )
    for bucket, storage_class, value in part.sizes:
        size.add_metric([t, bucket, storage_class], value)
    objects = GaugeMetricFamily(
        "sparki_s3_bucket_objects", "Objects stored in the bucket", labels=["target", "bucket"]
    )
    for bucket, value in part.objects:
        objects.add_metric([t, bucket], value)
    by_class = GaugeMetricFamily(
        "sparki_s3_storage_class_objects",
        "Objects stored in the bucket by storage class (from the inventory listing)",
        labels=["target", "bucket", "storage_class"],
    )
    for bucket, storage_class, value in part.class_objects:
        by_class.add_metric([t, bucket, storage_class], value)
    return [size, objects, by_class]
