"""What the etcd adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
the generator's helpers are imported inside dashboard() and synth() only, so importing
this module loads neither aiohttp's client nor the generator.
"""

from __future__ import annotations

from typing import Any

from ...catalog_model import Recording, Signal, quantiles
from ...collector import CollectorSpec

TITLE = "etcd"
# What the command line's --help names: the servers polled, and the variables any one
# of which configures a target without a config file (spec.from_env).
SERVERS = "etcd"
ENV_VARIABLES = ("ETCD_ENDPOINTS", "ETCDCTL_ENDPOINTS")

COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec("canary", "put, get and delete of the exporter's own key, timed"),
    CollectorSpec("status", "maintenance status of every configured member: DB size, leader, raft"),
    CollectorSpec("alarms", "the cluster's active alarms (NOSPACE, CORRUPT)"),
)

CANARY = "sparki_etcd_canary_duration_seconds"
CANARY_LATENCY = f"target_operation:{CANARY}:{{q}}_rate5m"
CANARY_RATE = f"target_operation:{CANARY}:rate5m"
DB_UTIL = "target_member:sparki_etcd_db_size:quota_ratio"
DB_FREE = "target_member:sparki_etcd_db_size:free_ratio"

RECORDINGS: tuple[Recording, ...] = (
    *quantiles("etcd", "target_operation", CANARY, "5m", ""),
    Recording("etcd", CANARY_RATE, f"rate({CANARY}_count[5m])"),
    Recording(
        "etcd",
        DB_UTIL,
        "sparki_etcd_db_size_bytes / on (job, instance, target) group_left ()"
        " (sparki_etcd_db_quota_bytes > 0)",
    ),
    Recording(
        "etcd",
        DB_FREE,
        "1 - sparki_etcd_db_size_in_use_bytes / (sparki_etcd_db_size_bytes > 0)",
    ),
)

SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="etcd_canary_latency",
        adapter="etcd",
        alert="SparkiEtcdCanaryLatencyHigh",
        title="etcd canary latency p95",
        value=CANARY_LATENCY.format(q="p95"),
        direction="above",
        unit="seconds",
        window_minutes=5,
        labels=("target", "operation"),
        summary="etcd canary {{ $labels.operation }} p95 above [threshold] on {{ $labels.target }}",
        description=(
            "The 95th percentile of the exporter's canary {{ $labels.operation }} on etcd"
            " {{ $labels.target }} is [value] (threshold [threshold] for [for]). The"
            " Kubernetes API server writes every object through etcd: it slows with it."
        ),
        guard=CANARY_RATE,
    ),
    Signal(
        key="etcd_db_quota",
        adapter="etcd",
        alert="SparkiEtcdDatabaseNearQuota",
        title="etcd database size / quota",
        value=DB_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "member"),
        summary="etcd {{ $labels.target }} member {{ $labels.member }} near its backend quota",
        description=(
            "The database of member {{ $labels.member }} of etcd {{ $labels.target }} is"
            " [value] of its quota (threshold [threshold] for [for]); over it etcd raises"
            " NOSPACE and refuses every write."
        ),
    ),
    Signal(
        key="etcd_defrag_due",
        adapter="etcd",
        alert="SparkiEtcdDefragmentationDue",
        title="etcd database share free (defragmentation returns it)",
        value=DB_FREE,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "member"),
        summary="etcd {{ $labels.target }} member {{ $labels.member }} needs defragmenting",
        description=(
            "[value] of the database file of member {{ $labels.member }} of etcd"
            " {{ $labels.target }} is free space (threshold [threshold] for [for]): it counts"
            " against the quota until the member is defragmented."
        ),
        symptom=False,
    ),
    Signal(
        key="etcd_no_leader",
        adapter="etcd",
        alert="SparkiEtcdNoLeader",
        title="etcd member has a leader",
        value="sparki_etcd_has_leader",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "member"),
        summary="etcd {{ $labels.target }} member {{ $labels.member }} has no leader",
        description=(
            "Member {{ $labels.member }} of etcd {{ $labels.target }} reports no leader"
            " (has_leader [value]) for [for]: it cannot serve writes or linearizable reads."
        ),
    ),
    Signal(
        key="etcd_member_down",
        adapter="etcd",
        alert="SparkiEtcdMemberDown",
        title="etcd member answers",
        value="sparki_etcd_member_up",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "member"),
        summary="etcd {{ $labels.target }} member {{ $labels.member }} does not answer",
        description=(
            "Member {{ $labels.member }} of etcd {{ $labels.target }} has not answered its"
            " status call (member_up [value]) for [for]; the cluster still serves while a"
            " quorum remains, with one failure less to spare."
        ),
    ),
    Signal(
        key="etcd_alarm",
        adapter="etcd",
        alert="SparkiEtcdAlarm",
        title="etcd alarm clear (1 = no alarm)",
        value="1 - sparki_etcd_alarm",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "alarm"),
        summary="etcd {{ $labels.target }} has an active {{ $labels.alarm }} alarm",
        description=(
            "etcd {{ $labels.target }} has raised the {{ $labels.alarm }} alarm (clear [value])"
            " for [for]"
            " (nospace: every write is refused; corrupt: a member's data diverged). It stays"
            " until an operator disarms it."
        ),
    ),
)

# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {"etcd_canary_latency": CANARY}


def synth(signal: Signal, st: Any) -> Any:
    """Input series for the promtool cases of this adapter's signals."""
    from ...generate import promtests as p

    key = signal.key
    if key == "etcd_canary_latency":
        h = p._Histogram(st)
        labels = {"target": "kube", "operation": "put"}
        parts = h.components(CANARY, [labels])
        return p.Synth(tuple(parts), labels, h.realized, volume=h.volume)
    if key in ("etcd_db_quota", "etcd_defrag_due"):
        labels = {"target": "kube", "member": "m0"}
        quota = 2.0 * 1024**3
        comps: tuple[Any, ...]
        if key == "etcd_db_quota":
            comps = (
                p._gauge("sparki_etcd_db_size_bytes", labels, lambda v, m, s: v * quota),
                p._gauge("sparki_etcd_db_size_in_use_bytes", labels, lambda v, m, s: v * quota),
                p._gauge("sparki_etcd_db_quota_bytes", {"target": "kube"}, p._const(quota)),
            )
        else:
            size = 1024.0**3
            comps = (
                p._gauge("sparki_etcd_db_size_bytes", labels, p._const(size)),
                p._gauge(
                    "sparki_etcd_db_size_in_use_bytes", labels, lambda v, m, s: (1 - v) * size
                ),
            )
        return p.Synth(comps, labels)
    if key in ("etcd_no_leader", "etcd_member_down"):
        labels = {"target": "kube", "member": "m1"}
        metric = "sparki_etcd_has_leader" if key == "etcd_no_leader" else "sparki_etcd_member_up"
        return p.Synth((p._gauge(metric, labels),), labels)
    if key == "etcd_alarm":
        labels = {"target": "kube", "alarm": "nospace"}
        return p.Synth((p._gauge("sparki_etcd_alarm", labels, lambda v, m, s: 1 - v),), labels)
    raise KeyError(f"no test input synthesizer for signal {key}")


def dashboard(thresholds: Any) -> dict[str, Any]:
    """The etcd board: canary, database against quota, leadership and raft, alarms."""
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
        "sparki-etcd",
        "Sparki storage / etcd",
        "etcd clusters: the exporter's canary, database size against the quota, leadership,"
        " raft progress and alarms, per member.",
        [datasource_variable(), target_variable("etcd")],
    )
    common_panels(b, "etcd")
    b.row("Canary")
    b.graph(
        "Canary latency p50 / p95 / p99",
        "s",
        "The exporter's own put, get and delete of one key, per operation.",
        quantile_queries(CANARY_LATENCY, T, "{{target}} {{operation}}"),
        signal="etcd_canary_latency",
    )
    b.graph(
        "Canary refusals by reason",
        "ops",
        "Canary operations etcd refused per second (nospace: over the quota).",
        [
            Query(
                f"sum by (target, operation, reason) (rate(sparki_etcd_canary_errors_total{T}"
                f"[{RATE}])) > 0",
                "{{target}} {{operation}} {{reason}}",
            )
        ],
    )
    b.row("Database")
    b.graph(
        "Database size / quota",
        "percentunit",
        "Each member's database file against quota_backend_bytes; over it, writes stop.",
        [Query(f"{DB_UTIL}{T}", "{{target}} {{member}}")],
        signal="etcd_db_quota",
        maximum=1,
    )
    b.graph(
        "Free share of the database (defragmentation due)",
        "percentunit",
        "Space a defragmentation would give back, per member.",
        [Query(f"{DB_FREE}{T}", "{{target}} {{member}}")],
        signal="etcd_defrag_due",
        maximum=1,
    )
    b.row("Leadership and raft")
    b.graph(
        "Members answering",
        "short",
        "1 while the member answers its status call; 0 when it is down or unreachable.",
        [Query(f"sparki_etcd_member_up{T}", "{{target}} {{member}}")],
        signal="etcd_member_down",
        maximum=1,
    )
    b.graph(
        "Members with a leader",
        "short",
        "1 while the member knows a leader; a member that does not answer has no sample.",
        [Query(f"sparki_etcd_has_leader{T}", "{{target}} {{member}}")],
        signal="etcd_no_leader",
        maximum=1,
    )
    b.graph(
        "Leader changes",
        "short",
        "Leader changes the exporter observed over the range's rate interval.",
        [Query(f"increase(sparki_etcd_leader_changes_total{T}[{RATE}])", "{{target}}")],
    )
    b.graph(
        "Raft index lag",
        "short",
        "Raft entries each member is behind the most advanced one.",
        [Query(f"sparki_etcd_raft_index_lag{T}", "{{target}} {{member}}")],
    )
    b.graph(
        "Alarms clear",
        "short",
        "1 while no alarm of that kind is active (NOSPACE, CORRUPT).",
        [Query(f"1 - sparki_etcd_alarm{T}", "{{target}} {{alarm}}")],
        signal="etcd_alarm",
        maximum=1,
    )
    return b.build()
