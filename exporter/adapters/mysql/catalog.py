"""What the MySQL/MariaDB adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
it imports no database driver, and the generator's modules only inside the functions
that need them, so there is no import cycle.
"""

from __future__ import annotations

from typing import Any

from ...catalog_model import Recording, Signal, quantiles
from ...collector import CollectorSpec

TITLE = "MySQL"
# What the command line's --help names: the servers polled, and the variables any one
# of which configures a target without a config file (spec.from_env).
SERVERS = "MySQL/MariaDB"
ENV_VARIABLES = ("MYSQL_HOST",)

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
    Signal(
        key="mysql_galera_not_primary",
        adapter="mysql",
        alert="SparkiMysqlGaleraNotPrimary",
        title="Galera node in the Primary component",
        value="sparki_mysql_galera_cluster_primary",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target",),
        summary="Galera node {{ $labels.target }} is outside the Primary component",
        description=(
            "sparki_mysql_galera_cluster_primary is [value] on {{ $labels.target }} for"
            " [for]: the node lost quorum (a network partition, or too many peers gone)"
            " and refuses reads and writes until it is part of a majority again."
        ),
    ),
    Signal(
        key="mysql_galera_not_ready",
        adapter="mysql",
        alert="SparkiMysqlGaleraNotReady",
        title="Galera node ready (wsrep_ready)",
        value="sparki_mysql_galera_ready",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target",),
        summary="Galera node {{ $labels.target }} does not accept queries",
        description=(
            "wsrep_ready is OFF on {{ $labels.target }} (sparki_mysql_galera_ready [value])"
            " for [for]: its clients get 'WSREP has not yet prepared node for application"
            " use'. sparki_mysql_galera_local_state says whether it is joining (1), a"
            " donor (2) or outside the Primary component (0)."
        ),
    ),
    Signal(
        key="mysql_galera_cluster_size",
        adapter="mysql",
        alert="SparkiMysqlGaleraClusterSmall",
        title="Galera cluster members",
        value="sparki_mysql_galera_cluster_size",
        direction="below",
        unit="count",
        window_minutes=0,
        labels=("target",),
        summary=(
            "Galera node {{ $labels.target }} sees [value] cluster members, below [threshold]"
        ),
        description=(
            "The cluster component of {{ $labels.target }} has [value] members (threshold"
            " [threshold] for [for]): a majority of the members must remain for the cluster"
            " to serve, so with fewer than three the next failure stops it."
        ),
        symptom=False,
    ),
)

# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {
    "mysql_statement_latency": "sparki_mysql_statement_duration_seconds",
}


def dashboard(thresholds: Any) -> dict[str, Any]:
    """The MySQL board: the same threshold lines as the alerts (thresholds.yaml)."""
    from ...generate import dashboards as d

    t = d.T
    ts = '{target=~"$target",schema=~"$schema"}'
    b = d.Board(
        thresholds,
        "sparki-mysql",
        "Sparki storage / MySQL",
        "MySQL and MariaDB targets: statement latency from performance_schema digests, "
        "connections, throughput, InnoDB and replication.",
        [
            d.datasource_variable(),
            d.target_variable("mysql"),
            d.query_variable(
                "schema",
                "Schema",
                f"label_values(sparki_mysql_statement_duration_seconds_count{t}, schema)",
            ),
        ],
    )
    d.common_panels(b, "mysql")
    b.row("Statements")
    b.graph(
        "Statement latency p50 / p95 / p99",
        "s",
        "Per-call latency from performance_schema statement digests, per schema.",
        d.quantile_queries(LATENCY, ts, "{{target}} {{schema}}"),
        signal="mysql_statement_latency",
    )
    b.graph(
        "Top digests by time",
        "s",
        "Execution time per second of the top digests; look the digest up in "
        "sparki_mysql_statement_info for its text.",
        [
            d.Query(
                "topk(10, rate(sparki_mysql_statement_seconds_total"
                f'{{target=~"$target",schema=~"$schema",digest!="other"}}[{d.RATE}]))',
                "{{target}} {{schema}} {{digest}}",
            )
        ],
    )
    b.graph(
        "Queries and slow queries",
        "ops",
        "Statements per second (Queries) and those over long_query_time.",
        [
            d.Query(f"{QUERY_RATE}{t}", "{{target}} queries"),
            d.Query(f"{SLOW_RATE}{t}", "{{target}} slow"),
        ],
    )
    b.graph(
        "Probe round trip p50 / p95 / p99",
        "s",
        "Round trip of the trivial query the exporter sends every poll, network included.",
        d.histogram_quantiles("sparki_mysql_probe_duration_seconds", t, "target", "{{target}}"),
    )
    b.row("Connections")
    b.graph(
        "Connections used / max_connections",
        "percentunit",
        "Threads_connected as a share of max_connections.",
        [d.Query(f"{CONN_UTIL}{t}", "{{target}}")],
        signal="mysql_connections",
        maximum=1,
    )
    b.graph(
        "Threads running, aborted and refused connects",
        "short",
        "Threads executing now; failed and refused connection attempts per second.",
        [
            d.Query(f"sparki_mysql_threads_running{t}", "{{target}} running"),
            d.Query(
                f"rate(sparki_mysql_aborted_connects_total{t}[{d.RATE}])", "{{target}} aborted"
            ),
            d.Query(
                f"rate(sparki_mysql_connections_refused_total{t}[{d.RATE}])", "{{target}} refused"
            ),
        ],
    )
    b.row("InnoDB")
    b.graph(
        "Deadlocks",
        "ops",
        "Transactions rolled back as deadlock victims, per second.",
        [d.Query(f"{DEADLOCK_RATE}{t}", "{{target}}")],
        signal="mysql_deadlocks",
    )
    b.graph(
        "Row lock waits",
        "ops",
        "Row lock waits per second and statements waiting now.",
        [
            d.Query(f"rate(sparki_mysql_innodb_row_lock_waits_total{t}[{d.RATE}])", "{{target}}/s"),
            d.Query(f"sparki_mysql_innodb_row_lock_current_waits{t}", "{{target}} waiting"),
        ],
    )
    b.graph(
        "Buffer pool hit ratio",
        "percentunit",
        "Share of logical page reads served without a disk read.",
        [d.Query(f"{BP_HIT_RATIO}{t}", "{{target}}")],
        minimum=None,
        maximum=1,
    )
    b.graph(
        "Dirty pages / buffer pool",
        "percentunit",
        "Modified pages not yet flushed, as a share of the buffer pool.",
        [
            d.Query(
                'sparki_mysql_innodb_buffer_pool_pages{target=~"$target",state="dirty"}'
                " / ignoring (state) "
                '(sparki_mysql_innodb_buffer_pool_pages{target=~"$target",state="total"} > 0)',
                "{{target}}",
            )
        ],
        maximum=1,
    )
    b.row("Replication")
    b.stat(
        "Replica threads",
        "none",
        "1 when the replica's IO / SQL thread runs (replicas only).",
        [d.Query(f"sparki_mysql_replication_running{t}", "{{target}} {{channel}} {{thread}}")],
        signal="mysql_replication_stopped",
        width=12,
        mappings=d.UP_MAPPINGS,
    )
    b.graph(
        "Replica lag",
        "s",
        "Seconds_Behind_Master/Source per channel (absent while a thread is stopped).",
        [d.Query(f"sparki_mysql_replication_lag_seconds{t}", "{{target}} {{channel}}")],
        signal="mysql_replication_lag",
    )
    b.row("Galera")
    b.stat(
        "Galera cluster members",
        "none",
        "wsrep_cluster_size as each node sees it (Galera nodes with the galera collector on).",
        [d.Query(f"sparki_mysql_galera_cluster_size{t}", "{{target}}")],
        signal="mysql_galera_cluster_size",
        width=8,
    )
    b.stat(
        "Galera Primary component",
        "none",
        "1 when the node's component has quorum (Primary); 0: it refuses reads and writes.",
        [d.Query(f"sparki_mysql_galera_cluster_primary{t}", "{{target}}")],
        signal="mysql_galera_not_primary",
        width=8,
        mappings=d.YES_NO_MAPPINGS,
    )
    b.stat(
        "Galera node ready",
        "none",
        "1 when the node accepts queries (wsrep_ready); see the local state when it does not.",
        [d.Query(f"sparki_mysql_galera_ready{t}", "{{target}}")],
        signal="mysql_galera_not_ready",
        width=8,
        mappings=d.YES_NO_MAPPINGS,
    )
    return b.build()


def synth(signal: Signal, st: Any) -> Any:
    """Raw series whose signal value is v, for the generated promtool cases."""
    from ...generate import promtests as p

    key = signal.key
    if key == "mysql_statement_latency":
        h = p._Histogram(st)
        labels = {"target": "mysql-main", "schema": "app"}
        comps = h.components("sparki_mysql_statement_duration_seconds", [labels])
        return p.Synth(tuple(comps), labels, h.realized, volume=h.volume)
    if key == "mysql_connections":
        labels = {"target": "mysql-main"}

        def used(v: float) -> int:
            return round(v * 1000)

        return p.Synth(
            (
                p._gauge("sparki_mysql_connections", labels, lambda v, m, s: float(used(v))),
                p._gauge("sparki_mysql_max_connections", labels, p._const(1000.0)),
            ),
            labels,
            lambda v: used(v) / 1000,
        )
    if key == "mysql_replication_stopped":
        labels = {"target": "mysql-replica", "channel": "default", "thread": "sql"}
        return p.Synth((p._gauge("sparki_mysql_replication_running", labels),), labels)
    if key == "mysql_replication_lag":
        labels = {"target": "mysql-replica", "channel": "default"}
        return p.Synth((p._gauge("sparki_mysql_replication_lag_seconds", labels),), labels)
    if key == "mysql_deadlocks":
        labels = {"target": "mysql-main"}
        return p.Synth(
            (
                p._counter(
                    "sparki_mysql_innodb_deadlocks_total",
                    labels,
                    lambda v, m, s: round(v * 60, 6),
                ),
            ),
            labels,
        )
    galera = {
        "mysql_galera_not_primary": "sparki_mysql_galera_cluster_primary",
        "mysql_galera_not_ready": "sparki_mysql_galera_ready",
        "mysql_galera_cluster_size": "sparki_mysql_galera_cluster_size",
    }
    if key in galera:
        labels = {"target": "galera-1"}
        return p.Synth((p._gauge(galera[key], labels),), labels)
    raise KeyError(f"no test input synthesizer for signal {key}")
