"""What Sparki records and alerts on: expressions, names and texts, without numbers.

The numbers (thresholds, ``for`` durations, severities) come from rules/thresholds.yaml;
this module says which PromQL each signal is, how it is named and described, and in
which direction it is bad. Every generated artifact (rule files, the PrometheusRule,
dashboards, promtool tests) is built from these two together.

Naming follows Prometheus' ``level:metric:operations`` convention: ``level`` lists the
labels the result is kept by (besides the scrape's job and instance, which every
aggregation here preserves by aggregating ``without`` the dropped labels), ``metric``
is the source metric without ``_total``, and ``operations`` is what was applied, newest
first (``p95_rate5m``: the 95th percentile of a 5 minute rate).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .. import adapters
from ..adapters.postgres.catalog import PG_CONN_UTIL, PG_LATENCY  # the overview's headline
from ..catalog_model import (
    EXPORTER_JOB,
    QUANTILES,
    Direction,
    Recording,
    Signal,
    Unit,
    quantiles,
)

__all__ = [
    "EXPORTER_JOB",
    "PG_CONN_UTIL",
    "PG_LATENCY",
    "QUANTILES",
    "Direction",
    "Recording",
    "Signal",
    "Unit",
    "quantiles",
]


# The exact SDK the committed dashboards were generated with: another build may emit
# different JSON, and `generate --check` would then fail for no change of ours.
SDK_REQUIREMENT = "grafana-foundation-sdk==1769699379!11.6.0"


def adapter_catalog(name: str) -> ModuleType:
    """An adapter package's catalog module (driver-free by contract)."""
    return importlib.import_module(f"exporter.adapters.{name}.catalog")


CATALOGS = {name: adapter_catalog(name) for name in adapters.names()}
ADAPTERS = ("common", *CATALOGS)
ADAPTER_TITLES = {"common": "Exporter", **{n: c.TITLE for n, c in CATALOGS.items()}}


# --- recording rules --------------------------------------------------------------------

REDIS_CMD_OBS_RATE = "target:sparki_redis_command_duration_seconds:rate5m"
REDIS_LATENCY = "target:sparki_redis_command_duration_seconds:{q}_rate5m"
REDIS_MEM_UTIL = "target:sparki_redis_memory:utilization"
REDIS_EVICT_RATE = "target:sparki_redis_evicted_keys:rate5m"
REDIS_LOOKUP_RATE = "target:sparki_redis_keyspace_lookups:rate5m"
REDIS_HIT_RATIO = "target:sparki_redis_keyspace_hits:ratio_rate5m"
REDIS_CMD_RATE = "target:sparki_redis_commands_processed:rate5m"
S3_CANARY_LATENCY = "target_operation:sparki_s3_probe_duration_seconds:{q}_rate5m"
S3_CANARY_RATE = "target_operation:sparki_s3_probes:rate5m"
S3_CANARY_FAIL = "target_operation:sparki_s3_probe_errors:ratio_rate5m"
S3_REQ_RATE = "target_bucket:sparki_s3_requests:rate15m"
S3_ERR_RATIO = "target_bucket_class:sparki_s3_request_errors:ratio_rate15m"
S3_XFER_RATE = "target_bucket_direction:sparki_s3_transferred_bytes:rate15m"
S3_COST = "target:sparki_s3_storage_cost_dollars_per_month:sum"
EXPORTER_UP = f'(up{{job="{EXPORTER_JOB}"}} or absent(up{{job="{EXPORTER_JOB}"}}) * 0)'

_REDIS_EVICTIONS = "rate(sparki_redis_evicted_keys_total[5m])"
_REDIS_HITS = "rate(sparki_redis_keyspace_hits_total[5m])"
_REDIS_LOOKUPS = (
    "sum without (node, role) (rate(sparki_redis_keyspace_hits_total[5m])"
    " + rate(sparki_redis_keyspace_misses_total[5m]))"
)
_S3_PROBES = "sum without (bucket) (rate(sparki_s3_probes_total[5m]))"
_S3_REQS = "sum without (operation) (rate(sparki_s3_requests_total[15m]))"

_LEGACY_RECORDINGS: tuple[Recording, ...] = (
    # Redis. A cluster target's series carry node and role: per-target rules sum them
    # away; memory stays per node, since each node has its own maxmemory, but without
    # role, so a failover does not end one series and start another (which would
    # resolve a firing alert and restart its `for`).
    *quantiles("redis", "target", "sparki_redis_command_duration_seconds", "5m", "cmd, node, role"),
    Recording(
        "redis",
        REDIS_CMD_OBS_RATE,
        "sum without (cmd, node, role) (rate(sparki_redis_command_duration_seconds_count[5m]))",
    ),
    Recording(
        "redis",
        REDIS_MEM_UTIL,
        # maxmemory where set, else the host's memory (maxmemory 0, Redis' default,
        # means no limit but the machine's).
        "max without (role) (sparki_redis_memory_used_bytes)"
        " / (max without (role) (sparki_redis_memory_max_bytes) > 0"
        " or max without (role) (sparki_redis_system_memory_bytes) > 0)",
    ),
    Recording("redis", REDIS_EVICT_RATE, f"sum without (node, role) ({_REDIS_EVICTIONS})"),
    Recording("redis", REDIS_LOOKUP_RATE, _REDIS_LOOKUPS),
    Recording(
        "redis",
        REDIS_HIT_RATIO,
        f"sum without (node, role) ({_REDIS_HITS}) / ({_REDIS_LOOKUPS} > 0)",
    ),
    Recording(
        "redis",
        REDIS_CMD_RATE,
        "sum without (node, role) (rate(sparki_redis_commands_processed_total[5m]))",
    ),
    # S3
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


_LEGACY_SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="target_down",
        adapter="common",
        alert="SparkiTargetDown",
        title="Target down",
        value="sparki_up",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("adapter", "target"),
        summary="Sparki cannot poll {{ $labels.adapter }} target {{ $labels.target }}",
        description=(
            "sparki_up is [value] for {{ $labels.adapter }} target {{ $labels.target }}:"
            " every poll for at least [for] failed. sparki_last_poll_error_reason says why"
            " (timeout, connect, auth, permission, protocol)."
        ),
    ),
    Signal(
        key="poll_stale",
        adapter="common",
        alert="SparkiPollsStale",
        title="Last successful poll age",
        value=(
            "(time() - sparki_last_poll_success_timestamp_seconds)"
            " / (sparki_poll_interval_seconds > 0)"
        ),
        direction="above",
        unit="intervals",
        window_minutes=0,
        labels=("adapter", "target"),
        summary="Data of {{ $labels.adapter }} target {{ $labels.target }} is stale",
        description=(
            "The last successful poll of {{ $labels.adapter }} target {{ $labels.target }}"
            " was [value] poll intervals ago (threshold [threshold] for [for]); its dashboards"
            " and alerts show old data."
        ),
    ),
    Signal(
        key="capability_missing",
        adapter="common",
        alert="SparkiCapabilityMissing",
        title="Optional data source unusable",
        value="sparki_capability",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("adapter", "target", "capability"),
        summary=(
            "{{ $labels.capability }} is unusable on {{ $labels.adapter }} target"
            " {{ $labels.target }}"
        ),
        description=(
            "sparki_capability is [value] for {{ $labels.capability }} on"
            " {{ $labels.adapter }} target {{ $labels.target }} for [for]: the metrics it"
            " feeds are missing and the alerts built on them cannot fire. The exporter's"
            " log says why and how to fix it."
        ),
    ),
    Signal(
        key="poll_error_ratio",
        adapter="common",
        alert="SparkiPollErrorRatioHigh",
        title="Failed polls / polls",
        # A target down throughout the window is SparkiTargetDown's business: without
        # the `unless`, a long outage would leave this alert past its `for` and it would
        # page once the target is back, while the window still holds the outage.
        value=(
            "((sum without (reason) (rate(sparki_poll_errors_total[5m]))"
            " * on (job, instance, adapter, target) sparki_poll_interval_seconds)"
            " unless on (job, instance, adapter, target) (max_over_time(sparki_up[5m]) == 0))"
        ),
        direction="above",
        unit="ratio",
        window_minutes=5,
        labels=("adapter", "target"),
        summary="Polls of {{ $labels.adapter }} target {{ $labels.target }} fail intermittently",
        description=(
            "[value] of the polls of {{ $labels.adapter }} target {{ $labels.target }}"
            " failed over 5 minutes (threshold [threshold] for [for]). A target that fails"
            " every other poll never stays down long enough for SparkiTargetDown, yet its"
            " clients see the same errors. sparki_poll_errors_total's reason says why."
        ),
        counter_rate=True,
    ),
    Signal(
        key="exporter_down",
        adapter="common",
        alert="SparkiExporterDown",
        title="Exporter scraped (Prometheus up)",
        value=EXPORTER_UP,
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("job", "instance"),
        summary="Prometheus cannot scrape the Sparki exporter (job {{ $labels.job }})",
        description=(
            "up of the exporter's job {{ $labels.job }} is [value] for [for] (or the job has"
            " no scrape target at all): every Sparki alert is blind until it is back."
        ),
    ),
    Signal(
        key="config_reload_failed",
        adapter="common",
        alert="SparkiConfigReloadFailed",
        title="Last configuration reload succeeded",
        value="sparki_exporter_config_last_reload_successful",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("job", "instance"),
        summary=(
            "Sparki exporter {{ $labels.instance }} (job {{ $labels.job }}) rejected its new"
            " configuration"
        ),
        description=(
            "The last configuration reload of {{ $labels.instance }} (job {{ $labels.job }})"
            " failed (sparki_exporter_config_last_reload_successful is [value] for [for]);"
            " the exporter still runs the previous configuration: the change you made is"
            " not in effect. Its log names the file, line and field."
        ),
        symptom=False,
    ),
    Signal(
        key="redis_command_latency",
        adapter="redis",
        alert="SparkiRedisCommandLatencyHigh",
        title="Redis command latency p95",
        value=REDIS_LATENCY.format(q="p95"),
        direction="above",
        unit="seconds",
        window_minutes=5,
        labels=("target",),
        summary="Redis command latency p95 above [threshold] on {{ $labels.target }}",
        description=(
            "The 95th percentile server-side latency over all commands on"
            " {{ $labels.target }} is [value] (threshold [threshold] for [for])."
        ),
        guard=REDIS_CMD_OBS_RATE,
    ),
    Signal(
        key="redis_memory",
        adapter="redis",
        alert="SparkiRedisMemoryHigh",
        title="Redis memory used / maxmemory (or host memory)",
        value=REDIS_MEM_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "node"),
        summary="Redis {{ $labels.target }} uses over [threshold] of its memory limit",
        description=(
            "Redis {{ $labels.target }} (node {{ $labels.node }}) uses [value] of its"
            " maxmemory, or of the host's memory where maxmemory is unset (threshold"
            " [threshold] for [for])."
        ),
    ),
    Signal(
        key="redis_node_down",
        adapter="redis",
        alert="SparkiRedisNodeDown",
        title="Redis Cluster node reachable",
        value="max without (role) (sparki_redis_node_up)",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "node"),
        summary="Redis Cluster node {{ $labels.node }} of {{ $labels.target }} is unreachable",
        description=(
            "sparki_redis_node_up is [value] for node {{ $labels.node }} of cluster target"
            " {{ $labels.target }} for [for]: the target as a whole still polls, but this"
            " node's slots fail for clients until a replica takes over."
        ),
    ),
    Signal(
        key="redis_cluster_state",
        adapter="redis",
        alert="SparkiRedisClusterStateFail",
        title="Redis Cluster state ok",
        value="sparki_redis_cluster_state_ok",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target",),
        summary="Redis Cluster {{ $labels.target }} reports cluster_state:fail",
        description=(
            "sparki_redis_cluster_state_ok is [value] for [for]: CLUSTER INFO of"
            " {{ $labels.target }} reports cluster_state other than ok, and the cluster"
            " refuses queries for at least some slots."
        ),
    ),
    Signal(
        key="redis_evictions",
        adapter="redis",
        alert="SparkiRedisEvictionsHigh",
        title="Redis evictions",
        value=REDIS_EVICT_RATE,
        direction="above",
        unit="per_second",
        window_minutes=5,
        labels=("target",),
        summary="Redis {{ $labels.target }} evicts keys at over [threshold]",
        description=(
            "Redis {{ $labels.target }} evicts keys at [value] (threshold [threshold] for"
            " [for]): the working set does not fit in maxmemory."
        ),
        symptom=False,
    ),
    Signal(
        key="redis_hit_ratio",
        adapter="redis",
        alert="SparkiRedisHitRatioLow",
        title="Redis keyspace hit ratio",
        value=REDIS_HIT_RATIO,
        direction="below",
        unit="ratio",
        window_minutes=5,
        labels=("target",),
        summary="Redis {{ $labels.target }} hit ratio below [threshold]",
        description=(
            "Only [value] of key lookups on {{ $labels.target }} hit (threshold [threshold]"
            " for [for])."
        ),
        guard=REDIS_LOOKUP_RATE,
        symptom=False,
    ),
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
)

# The common signals and recordings live here; each adapter's live in its package's
# catalog. (Blocks of an adapter still listed here are being moved to its package.)
# In adapter order (common first), each adapter's legacy block before its package's, so
# the generated files keep one order whichever blocks have moved.
RECORDINGS: tuple[Recording, ...] = tuple(
    r
    for a in ADAPTERS
    for r in (*_LEGACY_RECORDINGS, *(CATALOGS[a].RECORDINGS if a in CATALOGS else ()))
    if r.adapter == a
)
SIGNALS: tuple[Signal, ...] = tuple(
    s
    for a in ADAPTERS
    for s in (*_LEGACY_SIGNALS, *(CATALOGS[a].SIGNALS if a in CATALOGS else ()))
    if s.adapter == a
)
SIGNALS_BY_KEY = {s.key: s for s in SIGNALS}


# Signals that compare a histogram's percentile with their thresholds: those thresholds
# must be bucket edges of the histogram (exporter/alert_edges.py, generated).
def _catalog_histograms() -> dict[str, str]:
    return {k: m for c in CATALOGS.values() for k, m in c.HISTOGRAM_SIGNALS.items()}


_LEGACY_HISTOGRAM_SIGNALS = {
    "redis_command_latency": "sparki_redis_command_duration_seconds",
    "s3_canary_latency": "sparki_s3_probe_duration_seconds",
}
HISTOGRAM_SIGNALS = {
    k: m
    for s in SIGNALS
    for k, m in (*_LEGACY_HISTOGRAM_SIGNALS.items(), *_catalog_histograms().items())
    if k == s.key
}


def resolve(expr: str, exporter_job: str) -> str:
    """An expression with the exporter's scrape job (thresholds.yaml) filled in."""
    return expr.replace(EXPORTER_JOB, exporter_job)


# Always firing: the dead man's switch. Alertmanager routes it to a heartbeat receiver
# (an external service that pages when the heartbeats stop), proving that Prometheus
# evaluates the rules and Alertmanager delivers.
WATCHDOG = "SparkiWatchdog"
WATCHDOG_SUMMARY = "Sparki alerting pipeline heartbeat (always firing)"
WATCHDOG_DESCRIPTION = (
    "This alert always fires. It reaches the heartbeat receiver every repeat interval;"
    " when the heartbeats stop, Prometheus, its rules or Alertmanager are broken and no"
    " other Sparki alert can reach anyone."
)


def value_template(unit: Unit) -> str:
    """How ``$value`` is shown in a description."""
    return {
        "seconds": "{{ $value | humanizeDuration }}",
        "ratio": "{{ $value | humanizePercentage }}",
        "per_second": "{{ $value | humanize }}/s",
        "intervals": "{{ $value | humanize }}",
        "bool": "{{ $value }}",
        "bytes": "{{ $value | humanize1024 }}B",
    }[unit]


def number(value: float) -> str:
    """A threshold as PromQL and YAML want it: no trailing .0, no exponent for usual values."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def human_threshold(unit: Unit, value: float) -> str:
    if unit == "seconds":
        if value < 1:
            return f"{number(round(value * 1000, 9))}ms"
        if value >= 60 and value % 60 == 0:
            return f"{number(value / 60)}m"
        return f"{number(value)}s"
    if unit == "ratio":
        return f"{number(round(value * 100, 9))}%"
    if unit == "per_second":
        return f"{number(value)}/s"
    if unit == "intervals":
        return f"{number(value)} intervals"
    if unit == "bytes":
        for size, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if value >= size:
                return f"{number(round(value / size, 9))}{name}"
        return f"{number(value)}B"
    return number(value)


def anchor(alert: str) -> str:
    """The docs/runbooks.md anchor of an alert (GitHub's slug of a ``## Alert`` heading)."""
    return alert.lower()
