"""What the PostgreSQL adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
it must import no database or cloud driver, and nothing of exporter.generate at module
level: the board, the promtool inputs and scenarios import the generator's helpers
inside their functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...catalog_model import Recording, Signal, quantiles
from ...collector import CollectorSpec

if TYPE_CHECKING:
    from ...generate.promtests import Synth
    from ...generate.thresholds import SignalThresholds, Thresholds

TITLE = "PostgreSQL"
# What the command line's --help names: the servers polled, and the variables any one
# of which configures a target without a config file (spec.from_env).
SERVERS = "PostgreSQL"
ENV_VARIABLES = ("PG_HOST",)

# One module per collector (exporter/adapters/postgres/<name>.py), run in this order;
# names follow postgres_exporter's where one exists.
COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "activity",
        "pg_stat_activity: client connections by state, max_connections",
    ),
    CollectorSpec(
        "database",
        "pg_stat_database: transactions, block hits and reads, deadlocks, temporary "
        "files and bytes, recovery conflicts",
    ),
    CollectorSpec(
        "replication",
        "replay lag per standby, WAL receiver, replication slots, streaming standbys",
    ),
    CollectorSpec(
        "statements",
        "pg_stat_statements: per-database latency histograms, top-N statements, query texts",
    ),
)

# --- recording rules --------------------------------------------------------------------

PG_LATENCY = "target_datname:sparki_postgres_statement_duration_seconds:{q}_rate5m"
PG_CONN_UTIL = "target:sparki_postgres_connections:utilization"
PG_BLOCKS_RATE = "target_datname:sparki_postgres_blocks_accessed:rate5m"
PG_HIT_RATIO = "target_datname:sparki_postgres_blocks_hit:ratio_rate5m"
PG_XACT_RATE = "target_datname:sparki_postgres_transactions:rate5m"
PG_STMT_RATE = "target_datname:sparki_postgres_statement_duration_seconds:rate5m"
PG_DEADLOCK_RATE = "rate(sparki_postgres_deadlocks_total[5m])"

RECORDINGS: tuple[Recording, ...] = (
    *quantiles(
        "postgres", "target_datname", "sparki_postgres_statement_duration_seconds", "5m", ""
    ),
    # Statements observed per second: the latency alert's minimum traffic.
    Recording(
        "postgres", PG_STMT_RATE, "rate(sparki_postgres_statement_duration_seconds_count[5m])"
    ),
    Recording(
        "postgres",
        PG_CONN_UTIL,
        "sum without (state) (sparki_postgres_connections) / (sparki_postgres_max_connections > 0)",
    ),
    Recording(
        "postgres",
        PG_BLOCKS_RATE,
        "rate(sparki_postgres_blocks_hit_total[5m]) + rate(sparki_postgres_blocks_read_total[5m])",
    ),
    Recording(
        "postgres",
        PG_HIT_RATIO,
        "rate(sparki_postgres_blocks_hit_total[5m])"
        " / ((rate(sparki_postgres_blocks_hit_total[5m])"
        " + rate(sparki_postgres_blocks_read_total[5m])) > 0)",
    ),
    Recording(
        "postgres",
        PG_XACT_RATE,
        "sum without (outcome) (rate(sparki_postgres_transactions_total[5m]))",
    ),
)

# --- alerting signals -------------------------------------------------------------------

SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="postgres_statement_latency",
        adapter="postgres",
        alert="SparkiPostgresStatementLatencyHigh",
        title="PostgreSQL statement latency p95",
        value=PG_LATENCY.format(q="p95"),
        direction="above",
        unit="seconds",
        window_minutes=5,
        labels=("target", "datname"),
        summary=(
            "PostgreSQL statement latency p95 above [threshold] on {{ $labels.target }}"
            " ({{ $labels.datname }})"
        ),
        description=(
            "The 95th percentile execution time of statements in database"
            " {{ $labels.datname }} on {{ $labels.target }} is [value] (threshold"
            " [threshold] for [for])."
        ),
        guard=PG_STMT_RATE,
    ),
    Signal(
        key="postgres_connections",
        adapter="postgres",
        alert="SparkiPostgresConnectionsHigh",
        title="PostgreSQL connections used / max_connections",
        value=PG_CONN_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target",),
        summary="PostgreSQL {{ $labels.target }} uses over [threshold] of its connections",
        description=(
            "Client connections on {{ $labels.target }} are at [value] of max_connections"
            " (minus reserved slots); threshold [threshold] for [for]."
        ),
    ),
    Signal(
        key="postgres_cache_hit_ratio",
        adapter="postgres",
        alert="SparkiPostgresCacheHitRatioLow",
        title="PostgreSQL buffer cache hit ratio",
        value=PG_HIT_RATIO,
        direction="below",
        unit="ratio",
        window_minutes=5,
        labels=("target", "datname"),
        summary=(
            "PostgreSQL cache hit ratio below [threshold] on {{ $labels.target }}"
            " ({{ $labels.datname }})"
        ),
        description=(
            "Only [value] of block reads in database {{ $labels.datname }} on"
            " {{ $labels.target }} are served from shared_buffers (threshold [threshold]"
            " for [for])."
        ),
        guard=PG_BLOCKS_RATE,
        symptom=False,
    ),
    Signal(
        key="postgres_replication_lag",
        adapter="postgres",
        alert="SparkiPostgresReplicationLagHigh",
        title="PostgreSQL replication lag",
        value="sparki_postgres_replication_lag_seconds",
        direction="above",
        unit="seconds",
        window_minutes=0,
        labels=("target", "replica"),
        summary=(
            "PostgreSQL replica {{ $labels.replica }} of {{ $labels.target }} lags over [threshold]"
        ),
        description=(
            "Replica {{ $labels.replica }} of {{ $labels.target }} is [value] behind"
            " (threshold [threshold] for [for])."
        ),
    ),
    Signal(
        key="postgres_replication_stopped",
        adapter="postgres",
        alert="SparkiPostgresReplicationStopped",
        title="PostgreSQL standby WAL receiver streaming",
        value="sparki_postgres_wal_receiver_up",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target",),
        summary="Standby {{ $labels.target }} does not receive WAL from its primary",
        description=(
            "sparki_postgres_wal_receiver_up is [value] on standby {{ $labels.target }} for"
            " [for]: its WAL receiver is not streaming, so it falls behind with every write"
            " on the primary (its lag grows from the last message it received)."
        ),
    ),
    Signal(
        key="postgres_standby_missing",
        adapter="postgres",
        alert="SparkiPostgresStandbyMissing",
        title="PostgreSQL streaming standbys / expected_standbys",
        value=(
            "sparki_postgres_replication_standbys"
            " / (sparki_postgres_replication_expected_standbys > 0)"
        ),
        direction="below",
        unit="ratio",
        window_minutes=0,
        labels=("target",),
        summary="Primary {{ $labels.target }} has fewer streaming standbys than expected",
        description=(
            "Only [value] of the expected_standbys stream from {{ $labels.target }} (for"
            " [for]): a disconnected standby's lag series vanishes, this does not."
        ),
    ),
    Signal(
        key="postgres_slot_retained_wal",
        adapter="postgres",
        alert="SparkiPostgresSlotRetainingWal",
        title="PostgreSQL WAL retained by inactive replication slots",
        value=(
            "(sparki_postgres_replication_slot_retained_wal_bytes"
            " unless on (job, instance, target, slot)"
            " sparki_postgres_replication_slot_active == 1)"
        ),
        direction="above",
        unit="bytes",
        window_minutes=0,
        labels=("target", "slot"),
        summary=(
            "Inactive replication slot {{ $labels.slot }} on {{ $labels.target }} retains"
            " over [threshold] of WAL"
        ),
        description=(
            "Replication slot {{ $labels.slot }} on {{ $labels.target }} has no consumer and"
            " keeps [value] of WAL on the primary's disk (threshold [threshold] for [for]);"
            " it grows with every write until the disk is full."
        ),
    ),
    Signal(
        key="postgres_deadlocks",
        adapter="postgres",
        alert="SparkiPostgresDeadlocks",
        title="PostgreSQL deadlocks",
        value=PG_DEADLOCK_RATE,
        direction="above",
        unit="per_second",
        window_minutes=5,
        labels=("target", "datname"),
        summary=(
            "PostgreSQL database {{ $labels.datname }} on {{ $labels.target }} has"
            " deadlocks at over [threshold]"
        ),
        description=(
            "Deadlocks in database {{ $labels.datname }} on {{ $labels.target }} occur at"
            " [value] (threshold [threshold] for [for]); each aborted a transaction with"
            " SQLSTATE 40P01. The server log has both sides of every deadlock."
        ),
    ),
)

# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {
    "postgres_statement_latency": "sparki_postgres_statement_duration_seconds",
}


# --- dashboard, promtool inputs and scenarios -------------------------------------------


def dashboard(thresholds: Thresholds) -> dict[str, Any]:
    """The PostgreSQL board, built with the generator's Board (imported here, not at the
    top, so reading this catalog never loads the Grafana SDK)."""
    from ...generate.dashboards import (
        RATE,
        UP_MAPPINGS,
        Board,
        Query,
        T,
        common_panels,
        datasource_variable,
        histogram_quantiles,
        quantile_queries,
        query_variable,
        target_variable,
    )

    b = Board(
        thresholds,
        "sparki-postgres",
        "Sparki storage / PostgreSQL",
        "PostgreSQL targets: statement latency from pg_stat_statements, connections, "
        "transactions, cache and replication.",
        [
            datasource_variable(),
            target_variable("postgres"),
            query_variable(
                "datname",
                "Database",
                f"label_values(sparki_postgres_blocks_hit_total{T}, datname)",
            ),
        ],
    )
    common_panels(b, "postgres")
    td = '{target=~"$target",datname=~"$datname"}'
    b.row("Statements")
    b.graph(
        "Statement latency p50 / p95 / p99",
        "s",
        "Per-call execution time derived from pg_stat_statements, per database.",
        quantile_queries(PG_LATENCY, td, "{{target}} {{datname}}"),
        signal="postgres_statement_latency",
    )
    b.graph(
        "Probe round trip p50 / p95 / p99",
        "s",
        "Round trip of the trivial query the exporter sends every poll.",
        histogram_quantiles("sparki_postgres_probe_duration_seconds", T, "target", "{{target}}"),
    )
    b.graph(
        "Top statements by time",
        "s",
        "Execution seconds per second of the top statements (queryid; the rest is 'other'). "
        "Look the queryid up in sparki_postgres_statement_info.",
        [
            Query(
                "topk(10, sum by (target, datname, queryid) "
                f"(rate(sparki_postgres_statement_seconds_total{td}[{RATE}])))",
                "{{target}} {{datname}} {{queryid}}",
            )
        ],
    )
    b.graph(
        "Top statements by calls",
        "ops",
        "Calls per second of the top statements.",
        [
            Query(
                "topk(10, sum by (target, datname, queryid) "
                f"(rate(sparki_postgres_statement_calls_total{td}[{RATE}])))",
                "{{target}} {{datname}} {{queryid}}",
            )
        ],
    )
    b.graph(
        "pg_stat_statements entries",
        "short",
        "Entries tracked; evictions mean pg_stat_statements.max is too small.",
        [Query(f"sparki_postgres_statements_tracked{T}", "{{target}} tracked")],
    )
    b.graph(
        "pg_stat_statements evictions",
        "ops",
        "Deallocations per second; anything above zero loses statistics.",
        [
            Query(
                f"rate(sparki_postgres_statements_deallocated_total{T}[{RATE}])",
                "{{target}}",
            )
        ],
    )
    b.row("Connections and transactions")
    b.graph(
        "Connections by state",
        "short",
        "Client backends by state.",
        [Query(f"sum by (target, state) (sparki_postgres_connections{T})", "{{target}} {{state}}")],
        stack=True,
    )
    b.graph(
        "Connections used",
        "percentunit",
        "Client connections as a share of max_connections (minus reserved slots).",
        [Query(f"{PG_CONN_UTIL}{T}", "{{target}}")],
        signal="postgres_connections",
        maximum=1,
    )
    b.graph(
        "Transactions",
        "ops",
        "Committed plus rolled back transactions per second, per database.",
        [Query(f"{PG_XACT_RATE}{td}", "{{target}} {{datname}}")],
    )
    b.graph(
        "Rollbacks",
        "ops",
        "Rolled back transactions per second, per database.",
        [
            Query(
                f'rate(sparki_postgres_transactions_total{{target=~"$target",'
                f'datname=~"$datname",outcome="rollback"}}[{RATE}])',
                "{{target}} {{datname}}",
            )
        ],
    )
    b.row("Cache and replication")
    b.graph(
        "Buffer cache hit ratio",
        "percentunit",
        "Share of block reads served from shared_buffers (shown while blocks are read).",
        [Query(f"{PG_HIT_RATIO}{td}", "{{target}} {{datname}}")],
        signal="postgres_cache_hit_ratio",
        minimum=None,
        maximum=1,
    )
    b.graph(
        "Blocks accessed",
        "ops",
        "Buffer hits plus disk reads per second, per database.",
        [Query(f"{PG_BLOCKS_RATE}{td}", "{{target}} {{datname}}")],
    )
    b.graph(
        "Replication lag",
        "s",
        "Replay lag per standby (on a primary) or of this standby ('self').",
        [Query(f"sparki_postgres_replication_lag_seconds{T}", "{{target}} {{replica}}")],
        signal="postgres_replication_lag",
    )
    b.graph(
        "Replication lag (WAL bytes)",
        "bytes",
        "WAL not yet replayed per standby.",
        [Query(f"sparki_postgres_replication_lag_bytes{T}", "{{target}} {{replica}}")],
    )
    b.stat(
        "Standby WAL receiver",
        "none",
        "On standbys: 1 while the WAL receiver streams from the primary; 0 means the"
        " standby falls behind with every write.",
        [Query(f"sparki_postgres_wal_receiver_up{T}", "{{target}}")],
        signal="postgres_replication_stopped",
        width=8,
        mappings=UP_MAPPINGS,
    )
    b.stat(
        "Streaming standbys / expected",
        "percentunit",
        "On primaries with expected_standbys: the share of them streaming now.",
        [
            Query(
                f"sparki_postgres_replication_standbys{T}"
                f" / (sparki_postgres_replication_expected_standbys{T} > 0)",
                "{{target}}",
            )
        ],
        signal="postgres_standby_missing",
        width=8,
    )
    b.graph(
        "WAL retained by inactive slots",
        "bytes",
        "On primaries: WAL each replication slot without a consumer keeps on disk.",
        [
            Query(
                f"sparki_postgres_replication_slot_retained_wal_bytes{T}"
                f" unless on (job, instance, target, slot)"
                f" sparki_postgres_replication_slot_active{T} == 1",
                "{{target}} {{slot}}",
            )
        ],
        signal="postgres_slot_retained_wal",
        width=8,
    )
    b.row("Database trouble")
    b.graph(
        "Deadlocks",
        "reqps",
        "Deadlocks per second per database (pg_stat_database.deadlocks); each aborted"
        " a transaction. The server log shows both sides.",
        [Query(f"rate(sparki_postgres_deadlocks_total{td}[{RATE}])", "{{target}} {{datname}}")],
        signal="postgres_deadlocks",
        width=8,
    )
    b.graph(
        "Temporary files written",
        "Bps",
        "Bytes per second written to temporary files by queries whose sorts and hashes"
        " spill past work_mem (count: sparki_postgres_temp_files_total).",
        [
            Query(
                f"rate(sparki_postgres_temp_written_bytes_total{td}[{RATE}])",
                "{{target}} {{datname}}",
            )
        ],
        width=8,
    )
    b.graph(
        "Recovery conflicts",
        "reqps",
        "Standby queries cancelled per second because replay needed what they read.",
        [
            Query(
                f"rate(sparki_postgres_conflicts_total{td}[{RATE}])",
                "{{target}} {{datname}}",
            )
        ],
        width=8,
    )
    # The health collectors' rows, from their part of the catalog.
    from .catalog_health import health_rows

    health_rows(b, thresholds)
    return b.build()


def synth(signal: Signal, st: SignalThresholds) -> Synth:
    """promtool input series for this adapter's signals, built with promtests' helpers."""
    from ...generate.promtests import (
        Synth,
        _const,
        _counter,
        _gauge,
        _Histogram,
        _ratio_counters,
    )

    key = signal.key
    if key == "postgres_statement_latency":
        h = _Histogram(st)
        labels = {"target": "pg-main", "datname": "app"}
        comps = h.components("sparki_postgres_statement_duration_seconds", [labels])
        return Synth(tuple(comps), labels, h.realized, volume=h.volume)
    if key == "postgres_connections":
        labels = {"target": "pg-main"}

        def used(v: float) -> int:
            return round(v * 1000)

        return Synth(
            (
                _gauge(
                    "sparki_postgres_connections",
                    {**labels, "state": "active"},
                    lambda v, m, s: float(used(v) // 2),
                ),
                _gauge(
                    "sparki_postgres_connections",
                    {**labels, "state": "idle"},
                    lambda v, m, s: float(used(v) - used(v) // 2),
                ),
                _gauge("sparki_postgres_max_connections", labels, _const(1000.0)),
            ),
            labels,
            lambda v: used(v) / 1000,
        )
    if key == "postgres_cache_hit_ratio":
        labels = {"target": "pg-main", "datname": "app"}
        return Synth(
            tuple(
                _ratio_counters(
                    ("sparki_postgres_blocks_hit_total", labels),
                    [("sparki_postgres_blocks_read_total", labels, lambda v: 1 - v)],
                    1000.0,
                )
            ),
            labels,
            volume=1000.0,
        )
    if key == "postgres_replication_lag":
        labels = {"target": "pg-main", "replica": "standby1"}
        return Synth((_gauge("sparki_postgres_replication_lag_seconds", labels),), labels)
    if key == "postgres_replication_stopped":
        labels = {"target": "pg-standby"}
        return Synth((_gauge("sparki_postgres_wal_receiver_up", labels),), labels)
    if key == "postgres_standby_missing":
        labels = {"target": "pg-main"}

        def streaming(v: float) -> float:
            return float(round(v * 100))

        return Synth(
            (
                _gauge(
                    "sparki_postgres_replication_standbys",
                    labels,
                    lambda v, m, s: streaming(v),
                ),
                _gauge("sparki_postgres_replication_expected_standbys", labels, _const(100.0)),
            ),
            labels,
            lambda v: streaming(v) / 100,
            traps=(
                (
                    "expected_standbys 0 (no expectation): no ratio, no alert",
                    (
                        _gauge("sparki_postgres_replication_standbys", labels, _const(0.0)),
                        _gauge(
                            "sparki_postgres_replication_expected_standbys", labels, _const(0.0)
                        ),
                    ),
                ),
            ),
        )
    if key == "postgres_slot_retained_wal":
        slot = {"target": "pg-main", "slot": "standby2", "slot_type": "physical"}
        return Synth(
            (
                _gauge("sparki_postgres_replication_slot_retained_wal_bytes", slot),
                _gauge("sparki_postgres_replication_slot_active", slot, _const(0.0)),
            ),
            slot,
            traps=(
                (
                    "an active slot (its standby streams) retaining much WAL: silent",
                    (
                        _gauge(
                            "sparki_postgres_replication_slot_retained_wal_bytes",
                            slot,
                            _const(1e13),
                        ),
                        _gauge("sparki_postgres_replication_slot_active", slot, _const(1.0)),
                    ),
                ),
            ),
        )
    if key == "postgres_deadlocks":
        labels = {"target": "pg-main", "datname": "app"}
        return Synth(
            (
                _counter(
                    "sparki_postgres_deadlocks_total", labels, lambda v, m, s: round(v * 60, 6)
                ),
            ),
            labels,
        )
    if key in {s.key for s in HEALTH_SIGNALS}:
        return synth_health(signal, st)  # type: ignore[no-any-return]
    raise KeyError(f"no test input synthesizer for signal {key}")


def scenarios(thresholds: Thresholds) -> list[dict[str, Any]]:
    """Incidents the per-threshold cases cannot express: data vanishing while the
    latency alert fires (keep_firing_for holds it)."""
    from ...generate.catalog import SIGNALS_BY_KEY
    from ...generate.promtests import (
        JOB,
        _expected,
        _Histogram,
        _series,
        past,
    )
    from ...generate.thresholds import duration_seconds

    keep = duration_seconds(thresholds.keep_firing_for) // 60
    out: list[dict[str, Any]] = []
    if keep:
        st = thresholds["postgres_statement_latency"]
        h = _Histogram(st)
        labels = {"target": "pg-main", "datname": "app"}
        comps = h.components("sparki_postgres_statement_duration_seconds", [labels])
        crit = st.level("critical")
        assert crit is not None
        value = past(SIGNALS_BY_KEY["postgres_statement_latency"], crit)
        # Firing from minute 5 + for at the latest; the samples stop (the target hangs,
        # the exporter drops its series) at `last`; the rate window empties 5m later.
        last = 5 + max(lv.hold_minutes for lv in st.levels) + 1
        empty = last + 5
        expected = [
            _expected(
                thresholds,
                "postgres_statement_latency",
                lv.severity,
                {**labels, **JOB},
                h.realized(value),
            )
            for lv in st.levels
        ]
        out.append(
            {
                "name": "SparkiPostgresStatementLatencyHigh: keeps firing while its data is gone",
                "interval": "1m",
                "input_series": _series(comps, [value] * (last + 1)),
                "alert_rule_test": [
                    {"eval_time": f"{last}m", "alertname": crit_alert, "exp_alerts": expected}
                    for crit_alert in ["SparkiPostgresStatementLatencyHigh"]
                ]
                + [
                    {
                        "eval_time": f"{empty + keep - 2}m",
                        "alertname": "SparkiPostgresStatementLatencyHigh",
                        "exp_alerts": expected,
                    },
                    {
                        "eval_time": f"{empty + keep + 2}m",
                        "alertname": "SparkiPostgresStatementLatencyHigh",
                        "exp_alerts": [],
                    },
                ],
                "promql_expr_test": [
                    # The data really is gone while the alert holds.
                    {
                        "expr": PG_LATENCY.format(q="p95"),
                        "eval_time": f"{empty + 1}m",
                        "exp_samples": [],
                    }
                ],
            }
        )
    return out


from .catalog_health import (  # noqa: E402 (joined after the main part)
    HEALTH_COLLECTORS,
    HEALTH_RECORDINGS,
    HEALTH_SIGNALS,
    synth_health,
)

COLLECTORS = COLLECTORS + HEALTH_COLLECTORS
RECORDINGS = RECORDINGS + HEALTH_RECORDINGS
SIGNALS = SIGNALS + HEALTH_SIGNALS
