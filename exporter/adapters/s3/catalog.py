"""What the S3 adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
it must import no database or cloud driver, and imports the generator's helpers only
inside :func:`dashboard` and :func:`synth` (no import cycle, no SDK for the CLI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...catalog_model import Recording, Signal, quantiles
from ...collector import CollectorSpec

if TYPE_CHECKING:
    from ...generate.promtests import Synth
    from ...generate.thresholds import SignalThresholds, Thresholds

TITLE = "S3"
# What the command line's --help names: the servers polled, and the variables any one
# of which configures a target without a config file (spec.from_env).
SERVERS = "S3/MinIO"
ENV_VARIABLES = ("MINIO_ENDPOINT", "S3_BUCKET")

# In the order a target runs and exports them. Cheap ones are on; the inventory lists
# the whole bucket (one request per 1,000 objects) and MinIO's metrics need a token.
COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "canary",
        "PUT/GET/HEAD/DELETE of a small object every poll; the liveness check (sparki_up)",
    ),
    CollectorSpec(
        "cloudwatch",
        "CloudWatch request and storage metrics (AWS: on unless the target has an endpoint_url)",
    ),
    CollectorSpec("minio", "MinIO's own bucket metrics (needs its metrics token)", False),
    CollectorSpec(
        "inventory",
        "bytes and objects per storage class by listing the bucket, in the background",
        False,
    ),
    CollectorSpec(
        "multipart",
        "incomplete multipart uploads: count, age of the oldest, bytes (ListParts, capped)",
    ),
    CollectorSpec("lifecycle", "whether an enabled lifecycle rule covers each configured prefix"),
    CollectorSpec("cost", "monthly storage cost from sizes and the price table"),
)

# --- recording rules --------------------------------------------------------------------

S3_CANARY_LATENCY = "target_operation:sparki_s3_probe_duration_seconds:{q}_rate5m"
S3_CANARY_RATE = "target_operation:sparki_s3_probes:rate5m"
S3_CANARY_FAIL = "target_operation:sparki_s3_probe_errors:ratio_rate5m"
S3_REQ_RATE = "target_bucket:sparki_s3_requests:rate15m"
S3_ERR_RATIO = "target_bucket_class:sparki_s3_request_errors:ratio_rate15m"
S3_XFER_RATE = "target_bucket_direction:sparki_s3_transferred_bytes:rate15m"
S3_COST = "target:sparki_s3_storage_cost_dollars_per_month:sum"

_S3_PROBES = "sum without (bucket) (rate(sparki_s3_probes_total[5m]))"
_S3_REQS = "sum without (operation) (rate(sparki_s3_requests_total[15m]))"

RECORDINGS: tuple[Recording, ...] = (
    *quantiles("s3", "target_operation", "sparki_s3_probe_duration_seconds", "5m", "bucket"),
    Recording("s3", S3_CANARY_RATE, _S3_PROBES),
    Recording(
        "s3",
        S3_CANARY_FAIL,
        # Operations without a single failure have no error series: count them as 0.
        "(sum without (bucket, reason) (rate(sparki_s3_probe_errors_total[5m]))"
        f" or {_S3_PROBES} * 0) / ({_S3_PROBES} > 0)",
    ),
    Recording("s3", S3_REQ_RATE, _S3_REQS),
    Recording(
        "s3",
        S3_ERR_RATIO,
        "rate(sparki_s3_request_errors_total[15m])"
        f" / ignoring (class) group_left () ({_S3_REQS} > 0)",
    ),
    Recording("s3", S3_XFER_RATE, "rate(sparki_s3_transferred_bytes_total[15m])"),
    Recording(
        "s3",
        S3_COST,
        "sum without (bucket, storage_class) (sparki_s3_storage_cost_dollars_per_month)",
    ),
)

# --- alerting signals -------------------------------------------------------------------

SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="s3_canary_failure_ratio",
        adapter="s3",
        alert="SparkiS3CanaryFailing",
        title="S3 canary failure ratio",
        value=S3_CANARY_FAIL,
        direction="above",
        unit="ratio",
        window_minutes=5,
        labels=("target", "operation"),
        summary=(
            "S3 canary {{ $labels.operation }} fails over [threshold] on {{ $labels.target }}"
        ),
        description=(
            "[value] of the exporter's canary {{ $labels.operation }} operations on"
            " {{ $labels.target }} failed (threshold [threshold] for [for])."
        ),
    ),
    Signal(
        key="s3_canary_latency",
        adapter="s3",
        alert="SparkiS3CanaryLatencyHigh",
        title="S3 canary latency p95",
        value=S3_CANARY_LATENCY.format(q="p95"),
        direction="above",
        unit="seconds",
        window_minutes=5,
        labels=("target", "operation"),
        summary=("S3 canary {{ $labels.operation }} p95 above [threshold] on {{ $labels.target }}"),
        description=(
            "The 95th percentile of canary {{ $labels.operation }} operations on"
            " {{ $labels.target }} is [value] (threshold [threshold] for [for])."
        ),
        guard=S3_CANARY_RATE,
    ),
    Signal(
        key="s3_request_error_ratio",
        adapter="s3",
        alert="SparkiS3RequestErrorRatioHigh",
        title="S3 server error (5xx) ratio",
        value=S3_ERR_RATIO + '{class="5xx"}',
        direction="above",
        unit="ratio",
        window_minutes=15,
        labels=("target", "bucket", "class"),
        summary=(
            "S3 bucket {{ $labels.bucket }} on {{ $labels.target }} answers over [threshold]"
            " of requests with 5xx"
        ),
        description=(
            "[value] of requests to bucket {{ $labels.bucket }} on {{ $labels.target }}"
            " failed with a server error (threshold [threshold] for [for])."
        ),
        guard=S3_REQ_RATE,
        guard_match="ignoring (class) ",
    ),
    Signal(
        key="s3_multipart_abandoned",
        adapter="s3",
        alert="SparkiS3MultipartUploadAbandoned",
        title="Oldest incomplete multipart upload",
        value="sparki_s3_multipart_oldest_upload_age_seconds",
        direction="above",
        unit="seconds",
        window_minutes=0,
        labels=("target", "bucket"),
        summary=(
            "S3 bucket {{ $labels.bucket }} on {{ $labels.target }} has an incomplete"
            " multipart upload older than [threshold]"
        ),
        description=(
            "The oldest incomplete multipart upload in bucket {{ $labels.bucket }} on"
            " {{ $labels.target }} was started [value] ago (threshold [threshold] for"
            " [for]): abandoned, and its parts are billed until it is aborted."
        ),
        symptom=False,
    ),
    Signal(
        key="s3_lifecycle_rule_missing",
        adapter="s3",
        alert="SparkiS3LifecycleRuleMissing",
        title="Lifecycle rule present per prefix",
        value="sparki_s3_lifecycle_rule_present",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "bucket", "prefix"),
        summary=(
            "No enabled lifecycle rule covers {{ $labels.prefix }} in S3 bucket"
            " {{ $labels.bucket }} on {{ $labels.target }}"
        ),
        description=(
            "sparki_s3_lifecycle_rule_present is [value] for prefix {{ $labels.prefix }} of"
            " bucket {{ $labels.bucket }} on {{ $labels.target }} for [for]: nothing expires"
            " or archives what is stored there."
        ),
        symptom=False,
    ),
)

# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {
    "s3_canary_latency": "sparki_s3_probe_duration_seconds",
}


# --- dashboard and promtool cases -------------------------------------------------------


def dashboard(thresholds: Thresholds) -> dict[str, Any]:
    """The S3 board (dashboards/sparki-s3.json), built with the generator's Board."""
    from ...generate.dashboards import (
        RATE,
        Board,
        Query,
        T,
        common_panels,
        datasource_variable,
        quantile_queries,
        target_variable,
    )

    b = Board(
        thresholds,
        "sparki-s3",
        "Sparki storage / S3",
        "S3 and S3-compatible targets: the exporter's canary, real request traffic, "
        "errors, transfer, size and cost.",
        [datasource_variable(), target_variable("s3")],
    )
    common_panels(b, "s3")
    b.row("Canary")
    b.graph(
        "Canary latency p50 / p95 / p99",
        "s",
        "The exporter's own put, get, head and delete of a small object, per operation.",
        quantile_queries(S3_CANARY_LATENCY, T, "{{target}} {{operation}}"),
        signal="s3_canary_latency",
    )
    b.graph(
        "Canary failure ratio",
        "percentunit",
        "Share of canary operations that failed, per operation.",
        [Query(f"{S3_CANARY_FAIL}{T}", "{{target}} {{operation}}")],
        signal="s3_canary_failure_ratio",
        maximum=1,
    )
    b.graph(
        "Canary operations",
        "ops",
        "Canary operations attempted per second.",
        [Query(f"{S3_CANARY_RATE}{T}", "{{target}} {{operation}}")],
    )
    b.graph(
        "Canary failures by reason",
        "ops",
        "Failed canary operations per second, by reason.",
        [
            Query(
                "sum by (target, operation, reason) "
                f"(rate(sparki_s3_probe_errors_total{T}[{RATE}])) > 0",
                "{{target}} {{operation}} {{reason}}",
            )
        ],
    )
    b.row("Requests (CloudWatch or MinIO metrics; minutes late)")
    b.graph(
        "Requests",
        "reqps",
        "Real requests per second per bucket.",
        [Query(f"{S3_REQ_RATE}{T}", "{{target}} {{bucket}}")],
    )
    b.graph(
        "Error ratio",
        "percentunit",
        "Share of requests answered with 4xx or 5xx; the alert watches 5xx only.",
        [Query(f"{S3_ERR_RATIO}{T}", "{{target}} {{bucket}} {{class}}")],
        signal="s3_request_error_ratio",
        maximum=1,
    )
    b.graph(
        "Transfer",
        "Bps",
        "Bytes downloaded and uploaded per second.",
        [Query(f"{S3_XFER_RATE}{T}", "{{target}} {{bucket}} {{direction}}")],
    )
    b.graph(
        "Request latency",
        "s",
        "First-byte and total request latency reported by CloudWatch.",
        [
            Query(
                f"sparki_s3_request_latency_seconds{T}",
                "{{target}} {{bucket}} {{kind}} {{statistic}}",
            )
        ],
    )
    b.row("Storage")
    b.graph(
        "Bucket size",
        "bytes",
        "Stored bytes per bucket and storage class (daily metric).",
        [Query(f"sparki_s3_bucket_size_bytes{T}", "{{target}} {{bucket}} {{storage_class}}")],
        stack=True,
    )
    b.graph(
        "Objects",
        "short",
        "Objects per bucket (daily metric).",
        [Query(f"sparki_s3_bucket_objects{T}", "{{target}} {{bucket}}")],
    )
    b.stat(
        "Monthly storage cost",
        "currencyUSD",
        "Stored size times the configured price per GB-month, per target.",
        [Query(f"{S3_COST}{T}", "{{target}}")],
        width=12,
    )
    b.row("Storage hygiene (multipart uploads, lifecycle rules)")
    b.graph(
        "Oldest incomplete multipart upload",
        "s",
        "Age of the oldest upload started and never completed nor aborted; its parts are billed.",
        [
            Query(
                f"sparki_s3_multipart_oldest_upload_age_seconds{T}",
                "{{target}} {{bucket}}",
            )
        ],
        signal="s3_multipart_abandoned",
    )
    b.graph(
        "Incomplete multipart uploads",
        "short",
        "Uploads started and never completed nor aborted.",
        [Query(f"sparki_s3_multipart_uploads{T}", "{{target}} {{bucket}}")],
    )
    b.graph(
        "Bytes in incomplete multipart uploads",
        "bytes",
        "Their parts' bytes (absent when there are more uploads than multipart.parts_uploads).",
        [Query(f"sparki_s3_multipart_upload_bytes{T}", "{{target}} {{bucket}}")],
    )
    b.graph(
        "Lifecycle rule per prefix",
        "short",
        "1 when an enabled rule expires or transitions everything under the prefix.",
        [
            Query(
                f"sparki_s3_lifecycle_rule_present{T}",
                "{{target}} {{bucket}} {{prefix}}",
            )
        ],
        signal="s3_lifecycle_rule_missing",
        maximum=1,
    )
    b.graph(
        "Objects by storage class",
        "short",
        "Objects per storage class, from the inventory listing (Glacier: archived logs).",
        [
            Query(
                f"sparki_s3_storage_class_objects{T}",
                "{{target}} {{bucket}} {{storage_class}}",
            )
        ],
        stack=True,
    )
    return b.build()


def synth(signal: Signal, st: SignalThresholds) -> Synth:
    """Input series for the promtool cases of the S3 signals."""
    from ...generate.promtests import Synth
    from ...generate.promtests import _counter as counter_series
    from ...generate.promtests import _gauge as gauge_series
    from ...generate.promtests import _Histogram as Histogram
    from ...generate.promtests import _ratio_counters as ratio_counters

    key = signal.key
    if key == "s3_canary_failure_ratio":
        labels = {"target": "minio", "operation": "put"}
        put = {"target": "minio", "bucket": "sparki-canary", "operation": "put"}
        get = {**put, "operation": "get"}
        probes = "sparki_s3_probes_total"
        errors = "sparki_s3_probe_errors_total"
        return Synth(
            (
                *ratio_counters(
                    (errors, {**put, "reason": "timeout"}),
                    [(probes, put, lambda v: 1.0)],
                    10.0,
                ),
                # A healthy operation beside it has no error series at all: ratio 0.
                counter_series(probes, get, lambda v, m, s: 600.0),
            ),
            labels,
            traps=(
                (
                    "no canary traffic at all: no ratio (no division by zero), no alert",
                    (
                        counter_series(probes, put, lambda v, m, s: 0.0),
                        counter_series(errors, {**put, "reason": "timeout"}, lambda v, m, s: 0.0),
                    ),
                ),
            ),
        )
    if key == "s3_canary_latency":
        h = Histogram(st)
        labels = {"target": "minio", "operation": "put"}
        where = {**labels, "bucket": "sparki-canary"}
        comps = h.components("sparki_s3_probe_duration_seconds", [where])
        # One probe per observation: the canary rate is the latency alert's min_rate.
        canary = counter_series("sparki_s3_probes_total", where, lambda v, m, s: float(h.N) * s)
        return Synth((*comps, canary), labels, h.realized, volume=h.volume)
    if key == "s3_request_error_ratio":
        where = {"target": "aws", "bucket": "media"}
        labels = {**where, "class": "5xx"}
        return Synth(
            tuple(
                ratio_counters(
                    ("sparki_s3_request_errors_total", labels),
                    [
                        ("sparki_s3_requests_total", {**where, "operation": "get"}, lambda v: 0.75),
                        ("sparki_s3_requests_total", {**where, "operation": "put"}, lambda v: 0.25),
                        # Client errors are not the alert's business, however many.
                        (
                            "sparki_s3_request_errors_total",
                            {**where, "class": "4xx"},
                            lambda v: 0.4,
                        ),
                    ],
                    100.0,
                )
            ),
            labels,
            volume=100.0,
        )
    if key == "s3_multipart_abandoned":
        labels = {"target": "aws", "bucket": "artifacts"}
        return Synth(
            (gauge_series("sparki_s3_multipart_oldest_upload_age_seconds", labels),), labels
        )
    if key == "s3_lifecycle_rule_missing":
        labels = {"target": "aws", "bucket": "artifacts", "prefix": "logs/"}
        return Synth((gauge_series("sparki_s3_lifecycle_rule_present", labels),), labels)
    raise KeyError(f"no test input synthesizer for signal {key}")
