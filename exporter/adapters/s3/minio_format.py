"""MinIO's own Prometheus metrics: a strict exposition parser and the bucket mapping.

MinIO serves bucket-level metrics itself, behind a bearer token
(``mc admin prometheus generate``):

* metrics v2: ``/minio/v2/metrics/bucket`` (``minio_bucket_requests_total{api,bucket}``,
  ``minio_bucket_requests_{4xx,5xx}_errors_total``, ``minio_bucket_traffic_{received,sent}_bytes``,
  ``minio_bucket_usage_total_bytes``, ``minio_bucket_usage_object_total``);
* metrics v3: ``/minio/metrics/v3/bucket/api?buckets=a,b`` (``minio_bucket_api_total{name,bucket}``,
  ``minio_bucket_api_{4xx,5xx}_errors_total``, ``minio_bucket_api_traffic_{received,sent}_bytes``),
  served per node, and ``/minio/metrics/v3/cluster/usage/buckets``
  (``minio_cluster_usage_buckets_total_bytes``, ``minio_cluster_usage_buckets_objects_count``).

The parser accepts exactly the Prometheus text format (0.0.4) and rejects anything else
with the line number and what was wrong, so a wrong URL (an HTML login page, say) or a
truncated body is reported as such instead of turning into silently missing metrics.
A helper of the ``minio`` collector (exporter.adapters.s3.minio), free of any driver.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_VALUE = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|Inf|inf)|NaN|nan")
_TIMESTAMP = re.compile(r"-?\d+")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
MAX_LINES = 200_000


class ExpositionError(ValueError):
    """The body is not valid Prometheus text exposition (or not what MinIO serves)."""

    def __init__(self, line: int, problem: str) -> None:
        self.line = line
        self.problem = problem
        where = f"line {line}: " if line else ""
        super().__init__(f"invalid MinIO metrics exposition: {where}{problem}")


class Sample(NamedTuple):
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted by label name
    value: float

    def label(self, name: str) -> str | None:
        for key, value in self.labels:
            if key == name:
                return value
        return None


def _parse_labels(text: str, pos: int, lineno: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """Parse ``{a="b",...}`` from just after ``{``; return labels and the index after ``}``."""
    labels: dict[str, str] = {}
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == "}":
            return tuple(sorted(labels.items())), pos + 1
        match = _LABEL_NAME.match(text, pos)
        if not match:
            raise ExpositionError(lineno, f"expected a label name at column {pos + 1}")
        name = match.group(0)
        pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if text[pos : pos + 2] != '="':
            raise ExpositionError(lineno, f'expected =" after label {name!r}')
        pos += 2
        value: list[str] = []
        while True:
            if pos >= len(text):
                raise ExpositionError(lineno, f"unterminated value of label {name!r}")
            char = text[pos]
            if char == "\\":
                escaped = text[pos + 1 : pos + 2]
                if escaped not in _ESCAPES:
                    raise ExpositionError(lineno, f"invalid escape in value of label {name!r}")
                value.append(_ESCAPES[escaped])
                pos += 2
            elif char == '"':
                pos += 1
                break
            elif char == "\n":
                raise ExpositionError(lineno, f"newline in value of label {name!r}")
            else:
                value.append(char)
                pos += 1
        if name in labels:
            raise ExpositionError(lineno, f"label {name!r} appears twice")
        labels[name] = "".join(value)
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "}":
            continue
        else:
            raise ExpositionError(lineno, f"expected , or }} after label {name!r}")


def _parse_value(token: str, lineno: int) -> float:
    if not _VALUE.fullmatch(token):
        raise ExpositionError(lineno, f"{token[:40]!r} is not a sample value")
    return float(token)


def parse_exposition(text: str) -> list[Sample]:
    """Parse Prometheus text exposition strictly; raise :class:`ExpositionError` on bad input.

    Comment lines (``# HELP``, ``# TYPE`` and others) and blank lines are skipped; every
    other line must be ``name{labels} value [timestamp]``. The same series twice is an
    error, as the format requires.
    """
    if "\x00" in text:
        raise ExpositionError(0, "the body contains NUL bytes; it is not a text exposition")
    samples: list[Sample] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if lineno > MAX_LINES:
            raise ExpositionError(lineno, f"more than {MAX_LINES} lines")
        line = raw.rstrip("\r")
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        match = _NAME.match(line)
        if not match:
            snippet = stripped[:40]
            raise ExpositionError(lineno, f"expected a metric name, found {snippet!r}")
        name = match.group(0)
        pos = match.end()
        labels: tuple[tuple[str, str], ...] = ()
        if pos < len(line) and line[pos] == "{":
            labels, pos = _parse_labels(line, pos + 1, lineno)
        rest = line[pos:]
        if rest and rest[0] not in " \t":
            raise ExpositionError(lineno, f"expected a space after {name}")
        parts = rest.split()
        if len(parts) not in (1, 2):
            raise ExpositionError(lineno, f"expected a value (and optional timestamp) after {name}")
        value = _parse_value(parts[0], lineno)
        if len(parts) == 2 and not _TIMESTAMP.fullmatch(parts[1]):
            raise ExpositionError(lineno, f"{parts[1][:40]!r} is not a timestamp")
        key = (name, labels)
        if key in seen:
            raise ExpositionError(lineno, f"series {name} with these labels appears twice")
        seen.add(key)
        samples.append(Sample(name, labels, value))
    return samples


# --- mapping onto the sparki_s3_* names --------------------------------------------------

OPERATIONS = ("get", "put", "delete", "head", "post", "list", "select", "other")


def operation_of(api: str) -> str:
    """Map a MinIO API name to the operation classes of S3's CloudWatch request metrics.

    GET/PUT/DELETE/HEAD count requests on objects, as CloudWatch's GetRequests etc. do;
    DeleteObjects (a POST) counts as delete and SelectObjectContent as select, also as
    CloudWatch counts them. Bucket configuration calls land in ``other``.
    """
    api = api.lower()
    if api.startswith("selectobject"):
        return "select"
    if api.startswith("getobject"):
        return "get"
    if api.startswith(("putobject", "copyobject")):
        return "put"
    if api.startswith("deleteobject") or api in ("deletemultipleobjects", "abortmultipartupload"):
        return "delete"
    if api in ("headobject", "headbucket"):
        return "head"
    if api.startswith(("listobject", "listmultipart")):
        return "list"
    if api in (
        "newmultipartupload",
        "completemultipartupload",
        "postpolicybucket",
        "postrestoreobject",
        "restoreobject",
    ):
        return "post"
    return "other"


# metric name -> (kind, key); kind is requests, errors or bytes; key the label value.
COUNTERS: Mapping[str, tuple[str, str | None]] = {
    # v2
    "minio_bucket_requests_total": ("requests", None),
    "minio_bucket_requests_4xx_errors_total": ("errors", "4xx"),
    "minio_bucket_requests_5xx_errors_total": ("errors", "5xx"),
    "minio_bucket_traffic_received_bytes": ("bytes", "upload"),
    "minio_bucket_traffic_sent_bytes": ("bytes", "download"),
    # v3
    "minio_bucket_api_total": ("requests", None),
    "minio_bucket_api_4xx_errors_total": ("errors", "4xx"),
    "minio_bucket_api_5xx_errors_total": ("errors", "5xx"),
    "minio_bucket_api_traffic_received_bytes": ("bytes", "upload"),
    "minio_bucket_api_traffic_sent_bytes": ("bytes", "download"),
}
SIZE_GAUGES = ("minio_bucket_usage_total_bytes", "minio_cluster_usage_buckets_total_bytes")
OBJECT_GAUGES = ("minio_bucket_usage_object_total", "minio_cluster_usage_buckets_objects_count")


class CounterReading(NamedTuple):
    kind: str  # requests, errors, bytes
    bucket: str
    key: str  # operation, class or direction
    series: tuple[str, tuple[tuple[str, str], ...]]  # the raw series, for deltas
    value: float


@dataclass
class BucketReading:
    """What one scrape of MinIO said about the selected buckets."""

    counters: list[CounterReading] = field(default_factory=list)
    sizes: dict[str, float] = field(default_factory=dict)
    objects: dict[str, float] = field(default_factory=dict)
    buckets: set[str] = field(default_factory=set)


def bucket_reading(samples: Iterable[Sample], buckets: set[str] | None) -> BucketReading:
    """Pick the bucket metrics out of parsed samples; ``buckets=None`` keeps every bucket.

    Counter values must be finite and non-negative; anything else is an error rather
    than a silently wrong total. Usage gauges reported by several nodes are the same
    cluster-wide figure, so the largest is kept rather than a sum.
    """
    out = BucketReading()
    for sample in samples:
        counter = COUNTERS.get(sample.name)
        is_size = sample.name in SIZE_GAUGES
        is_objects = sample.name in OBJECT_GAUGES
        if counter is None and not is_size and not is_objects:
            continue
        bucket = sample.label("bucket")
        if bucket is None:
            raise ExpositionError(0, f"{sample.name} has no bucket label")
        if buckets is not None and bucket not in buckets:
            continue
        if not math.isfinite(sample.value) or sample.value < 0:
            raise ExpositionError(0, f"{sample.name} for bucket {bucket!r} is {sample.value}")
        out.buckets.add(bucket)
        if is_size:
            out.sizes[bucket] = max(out.sizes.get(bucket, 0.0), sample.value)
        elif is_objects:
            out.objects[bucket] = max(out.objects.get(bucket, 0.0), sample.value)
        elif counter is not None:
            kind, key = counter
            if key is None:
                api = sample.label("api") or sample.label("name") or ""
                key = operation_of(api)
            out.counters.append(
                CounterReading(kind, bucket, key, (sample.name, sample.labels), sample.value)
            )
    return out


class CounterTracker:
    """Turns raw counters from many series (nodes, APIs) into our own monotonic totals.

    Each raw series is remembered with its last value; an increase adds the difference,
    a decrease (that node restarted) adds the new value, as Prometheus's ``rate()``
    would, and a first sight adds the whole value, so the totals equal MinIO's own
    figures until a node restarts. Series that vanish are remembered, so a load
    balancer switching nodes never counts a node's history twice.
    """

    def __init__(self) -> None:
        self.last: dict[tuple[str, tuple[str, tuple[tuple[str, str], ...]]], float] = {}
        self.totals: dict[tuple[str, str, str], float] = {}

    def apply(self, source: str, readings: Iterable[CounterReading]) -> None:
        for r in readings:
            key = (source, r.series)
            before = self.last.get(key)
            increase = r.value if before is None or r.value < before else r.value - before
            self.last[key] = r.value
            total_key = (r.kind, r.bucket, r.key)
            self.totals[total_key] = self.totals.get(total_key, 0.0) + increase
