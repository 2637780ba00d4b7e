"""What the MySQL/MariaDB adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
it imports no database driver, and the generator's modules only inside the functions
that need them, so there is no import cycle.
"""

from __future__ import annotations

from ...catalog_model import Recording, Signal, quantiles
from ...collector import CollectorSpec

TITLE = "MySQL"

COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "connections",
        "Threads_connected vs max_connections, threads running, aborted and refused connects",
    ),
    CollectorSpec("global_status", "queries, questions, slow queries and commands by kind"),
    CollectorSpec(
        "innodb", "buffer pool reads and hits, dirty pages, row lock waits and deadlocks"
    ),
    CollectorSpec(
        "statements",
        "statement latency histograms and top-N digests from performance_schema",
    ),
    CollectorSpec("replication", "SHOW REPLICA/SLAVE STATUS: IO and SQL threads, lag, last errors"),
    # Off unless asked: on a server that is not a Galera node it can only say so.
    CollectorSpec("galera", "wsrep cluster size, state and readiness (Galera nodes)", False),
)

LATENCY = "target_schema:sparki_mysql_statement_duration_seconds:{q}_rate5m"
STMT_RATE = "target_schema:sparki_mysql_statement_duration_seconds:rate5m"
CONN_UTIL = "target:sparki_mysql_connections:utilization"
QUERY_RATE = "target:sparki_mysql_queries:rate5m"
SLOW_RATE = "target:sparki_mysql_slow_queries:rate5m"
DEADLOCK_RATE = "target:sparki_mysql_innodb_deadlocks:rate5m"
BP_HIT_RATIO = "target:sparki_mysql_innodb_buffer_pool_read_requests:hit_ratio_rate5m"

RECORDINGS: tuple[Recording, ...] = (
    *quantiles("mysql", "target_schema", "sparki_mysql_statement_duration_seconds", "5m", ""),
    # Statements observed per second: the latency alert's minimum traffic.
    Recording("mysql", STMT_RATE, "rate(sparki_mysql_statement_duration_seconds_count[5m])"),
    Recording("mysql", CONN_UTIL, "sparki_mysql_connections / (sparki_mysql_max_connections > 0)"),
    Recording("mysql", QUERY_RATE, "rate(sparki_mysql_queries_total[5m])"),
    Recording("mysql", SLOW_RATE, "rate(sparki_mysql_slow_queries_total[5m])"),
    Recording("mysql", DEADLOCK_RATE, "rate(sparki_mysql_innodb_deadlocks_total[5m])"),
    Recording(
        "mysql",
        BP_HIT_RATIO,
        "1 - rate(sparki_mysql_innodb_buffer_pool_reads_total[5m])"
        " / (rate(sparki_mysql_innodb_buffer_pool_read_requests_total[5m]) > 0)",
    ),
)

SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="mysql_statement_latency",
        adapter="mysql",
        alert="SparkiMysqlStatementLatencyHigh",
        title="MySQL statement latency p95",
        value=LATENCY.format(q="p95"),
        direction="above",
        unit="seconds",
        window_minutes=5,
        labels=("target", "schema"),
        summary=(
            "MySQL statement latency p95 above [threshold] on {{ $labels.target }}"
            " ({{ $labels.schema }})"
        ),
        description=(
            "The 95th percentile execution time of statements in schema"
            " {{ $labels.schema }} on {{ $labels.target }} is [value] (threshold"
            " [threshold] for [for]), from performance_schema statement digests."
        ),
        guard=STMT_RATE,
    ),
    Signal(
        key="mysql_connections",
        adapter="mysql",
        alert="SparkiMysqlConnectionsHigh",
        title="MySQL connections used / max_connections",
        value=CONN_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target",),
        summary="MySQL {{ $labels.target }} uses over [threshold] of its connections",
        description=(
            "Threads_connected on {{ $labels.target }} is at [value] of max_connections"
            " (threshold [threshold] for [for]); at the limit new clients get 'Too many"
            " connections'."
        ),
    ),
    Signal(
        key="mysql_replication_stopped",
        adapter="mysql",
        alert="SparkiMysqlReplicationStopped",
        title="MySQL replica IO/SQL thread running",
        value="sparki_mysql_replication_running",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "channel", "thread"),
        summary=(
            "Replica {{ $labels.target }}: the {{ $labels.thread }} thread of channel"
            " '{{ $labels.channel }}' is not running"
        ),
        description=(
            "sparki_mysql_replication_running is [value] for the {{ $labels.thread }} thread"
            " of channel '{{ $labels.channel }}' on {{ $labels.target }} for [for]: the"
            " replica falls behind with every write on its source."
            " sparki_mysql_replication_last_error says whether the thread stopped on an error."
        ),
    ),
    Signal(
        key="mysql_replication_lag",
        adapter="mysql",
        alert="SparkiMysqlReplicationLagHigh",
        title="MySQL replica lag (Seconds_Behind_Master)",
        value="sparki_mysql_replication_lag_seconds",
        direction="above",
        unit="seconds",
        window_minutes=0,
        labels=("target", "channel"),
        summary="MySQL replica {{ $labels.target }} lags over [threshold]",
        description=(
            "Replica {{ $labels.target }} (channel '{{ $labels.channel }}') is [value]"
            " behind its source (threshold [threshold] for [for])."
        ),
    ),
    Signal(
        key="mysql_deadlocks",
        adapter="mysql",
        alert="SparkiMysqlDeadlocks",
        title="MySQL InnoDB deadlocks per second",
        value=DEADLOCK_RATE,
        direction="above",
        unit="per_second",
        window_minutes=5,
        labels=("target",),
        summary="InnoDB deadlocks on {{ $labels.target }} at [value]",
        description=(
            "InnoDB rolls back [value] transactions per second on {{ $labels.target }} as"
            " deadlock victims (threshold [threshold] for [for]); each is an error an"
            " application must retry."
        ),
        counter_rate=True,
    ),
)

# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {
    "mysql_statement_latency": "sparki_mysql_statement_duration_seconds",
}
