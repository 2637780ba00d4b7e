"""Grafana dashboards, built with grafana-foundation-sdk.

This module is imported only by ``sparki-exporter generate`` (never by the exporter
itself), so the SDK is a dependency of generating dashboards, not of running. Every
panel has a unit; every panel that shows an alerted signal takes its threshold steps
from rules/thresholds.yaml and names the signal in its description, which is how the
tests find and compare them.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from . import catalog as c
from .thresholds import Thresholds

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
T = '{target=~"$target"}'
RATE = "$__rate_interval"
TAG_TEXT = "Threshold steps from rules/thresholds.yaml ({key})."


def steps_for(thresholds: Thresholds, key: str) -> list[dm.Threshold]:
    """Colour steps for a signal: green where healthy, orange past warning, red past critical."""
    signal = c.SIGNALS_BY_KEY[key]
    st = thresholds[key]
    warning, critical = st.level("warning"), st.level("critical")
    if signal.direction == "above":
        steps = [dm.Threshold(None, "green")]
        if warning:
            steps.append(dm.Threshold(warning.threshold, "orange"))
        if critical:
            steps.append(dm.Threshold(critical.threshold, "red"))
        return steps
    # Below: Grafana colours a value by the highest step it reaches, so the worst colour
    # is the base and the healthy one starts at the warning line.
    worst = "red" if critical else "orange"
    steps = [dm.Threshold(None, worst)]
    if critical and warning and critical.threshold != warning.threshold:
        steps.append(dm.Threshold(critical.threshold, "orange"))
    healthy_from = warning.threshold if warning else critical.threshold if critical else 0.0
    steps.append(dm.Threshold(healthy_from, "green"))
    return steps


@dataclass
class Query:
    expr: str
    legend: str


@dataclass
class Board:
    """One dashboard being assembled: panel ids are handed out in order, from 1.

    The SDK lays panels out left to right and wraps only when a line is exactly full,
    so the widths on each line must add up to 24.
    """

    thresholds: Thresholds
    uid: str
    title: str
    description: str
    variables: list[Any]
    items: list[Any] = field(default_factory=list)
    next_id: int = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        self.items.append(("row", db.Row(title).id(self._id())))

    def _targets(self, queries: Sequence[Query]) -> list[Any]:
        return [
            prometheus.Dataquery()
            .expr(q.expr)
            .legend_format(q.legend)
            .ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE)
            for i, q in enumerate(queries)
        ]

    def _describe(self, description: str, signal: str | None) -> str:
        return f"{description} {TAG_TEXT.format(key=signal)}" if signal else description

    def _steps(self, signal: str | None) -> Any:
        steps = steps_for(self.thresholds, signal) if signal else [dm.Threshold(None, "green")]
        return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)

    def graph(
        self,
        title: str,
        unit: str,
        description: str,
        queries: Sequence[Query],
        signal: str | None = None,
        width: int = 12,
        stack: bool = False,
        minimum: float | None = 0,
        maximum: float | None = None,
    ) -> None:
        panel = (
            timeseries.Panel()
            .id(self._id())
            .title(title)
            .description(self._describe(description, signal))
            .datasource(DATASOURCE)
            .unit(unit)
            .span(width)
            .height(8)
            .targets(self._targets(queries))
            .thresholds(self._steps(signal))
            .line_width(1)
            .fill_opacity(10 if not stack else 40)
            .show_points(common.VisibilityMode.NEVER)
            .legend(
                common_builders.VizLegendOptions()
                .show_legend(True)
                .display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.BOTTOM)
                .calcs(["lastNotNull", "max"])
            )
            .tooltip(
                common_builders.VizTooltipOptions()
                .mode(common.TooltipDisplayMode.MULTI)
                .sort(common.SortOrder.DESCENDING)
            )
        )
        if signal:
            panel = panel.thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(
                    common.GraphThresholdsStyleMode.DASHED
                )
            )
        if stack:
            panel = panel.stacking(
                common_builders.StackingConfig().mode(common.StackingMode.NORMAL)
            )
        if minimum is not None:
            panel = panel.min(minimum)
        if maximum is not None:
            panel = panel.max(maximum)
        self.items.append(("panel", panel))

    def stat(
        self,
        title: str,
        unit: str,
        description: str,
        queries: Sequence[Query],
        signal: str | None = None,
        width: int = 6,
        mappings: list[Any] | None = None,
    ) -> None:
        panel = (
            stat.Panel()
            .id(self._id())
            .title(title)
            .description(self._describe(description, signal))
            .datasource(DATASOURCE)
            .unit(unit)
            .span(width)
            .height(8)
            .targets(self._targets(queries))
            .thresholds(self._steps(signal))
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        )
        if mappings:
            panel = panel.mappings(mappings)
        self.items.append(("panel", panel))

    def build(self) -> dict[str, Any]:
        board = (
            db.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags(["sparki", "storage"])
            .editable()
            .refresh("30s")
            .time("now-6h", "now")
            .timezone("browser")
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .link(
                db.DashboardLink("Sparki dashboards")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["sparki"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )
        for variable in self.variables:
            board = board.with_variable(variable)
        for kind, item in self.items:
            board = board.with_row(item) if kind == "row" else board.with_panel(item)
        data: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
        return data


# --- variables --------------------------------------------------------------------------


def datasource_variable() -> Any:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(name: str, label: str, query: str) -> Any:
    return (
        db.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def target_variable(adapter: str | None) -> Any:
    selector = f'sparki_up{{adapter="{adapter}"}}' if adapter else "sparki_up"
    return query_variable("target", "Target", f"label_values({selector}, target)")


UP_MAPPINGS = [
    dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="DOWN", color="red", index=0),
            "1": dm.ValueMappingResult(text="UP", color="green", index=1),
        }
    )
]


CAPABILITY_MAPPINGS = [
    dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="UNUSABLE", color="orange", index=0),
            "1": dm.ValueMappingResult(text="OK", color="green", index=1),
        }
    )
]


def quantile_queries(record: str, selector: str, legend: str) -> list[Query]:
    return [
        Query(f"{record.format(q=name)}{selector}", f"{name} {legend}") for name, _ in c.QUANTILES
    ]


def histogram_quantiles(metric: str, selector: str, by: str, legend: str) -> list[Query]:
    return [
        Query(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{selector}[{RATE}])))",
            f"{name} {legend}",
        )
        for name, q in c.QUANTILES
    ]


def common_panels(b: Board, adapter: str) -> None:
    sel = f'{{adapter="{adapter}",target=~"$target"}}'
    b.row("Polling")
    b.stat(
        "Up",
        "none",
        "1 when the last poll of the target succeeded and is fresh.",
        [Query(f"sparki_up{sel}", "{{target}}")],
        signal="target_down",
        width=6,
        mappings=UP_MAPPINGS,
    )
    b.stat(
        "Optional data sources",
        "none",
        "1 when an optional source is usable; 0 disables the metrics it feeds (the "
        "exporter's log says why and how to fix it).",
        [Query(f"sparki_capability{sel}", "{{target}} {{capability}}")],
        signal="capability_missing",
        width=6,
        mappings=CAPABILITY_MAPPINGS,
    )
    b.graph(
        "Poll duration",
        "s",
        "How long the last poll took; it must stay well below the poll timeout.",
        [Query(f"sparki_poll_duration_seconds{sel}", "{{target}}")],
        width=12,
    )
    b.graph(
        "Poll errors by reason",
        "ops",
        "Failed polls per second, by reason.",
        [
            Query(
                f"sum by (target, reason) (rate(sparki_poll_errors_total{sel}[{RATE}])) > 0",
                "{{target}} {{reason}}",
            )
        ],
        width=12,
    )
    b.graph(
        "Failed polls / polls",
        "percentunit",
        "Share of polls that failed over 5 minutes; a target failing intermittently shows"
        " here while Up still flickers to 1.",
        [
            Query(
                f"sum without (reason) (rate(sparki_poll_errors_total{sel}[5m]))"
                f" * on (job, instance, adapter, target) sparki_poll_interval_seconds{sel}",
                "{{target}}",
            )
        ],
        signal="poll_error_ratio",
        width=12,
        maximum=1,
    )


# --- the dashboards ---------------------------------------------------------------------


def overview(thresholds: Thresholds) -> dict[str, Any]:
    b = Board(
        thresholds,
        "sparki-overview",
        "Sparki storage / Overview",
        "Every target's state and the platform's four headline signals against their "
        "alert thresholds.",
        [datasource_variable(), target_variable(None)],
    )
    b.row("Targets")
    b.stat(
        "Targets up",
        "none",
        "1 when the last poll of the target succeeded and is fresh; 0 pages after the "
        "SparkiTargetDown hold.",
        [Query(f"sparki_up{T}", "{{adapter}}/{{target}}")],
        signal="target_down",
        width=12,
        mappings=UP_MAPPINGS,
    )
    b.stat(
        "Exporter scraped",
        "none",
        "Prometheus' own up for the exporter's job; 0 (or no series) pages"
        " SparkiExporterDown: every other panel and alert is blind then.",
        [Query(f'up{{job="{thresholds.exporter_job}"}}', "{{instance}}")],
        signal="exporter_down",
        width=6,
        mappings=UP_MAPPINGS,
    )
    b.stat(
        "Last config reload",
        "none",
        "1 when the exporter's last configuration reload succeeded; 0 means it still"
        " runs the previous configuration.",
        [Query("sparki_exporter_config_last_reload_successful", "{{instance}}")],
        signal="config_reload_failed",
        width=6,
        mappings=[
            dm.ValueMap(
                options={
                    "0": dm.ValueMappingResult(text="REJECTED", color="orange", index=0),
                    "1": dm.ValueMappingResult(text="OK", color="green", index=1),
                }
            )
        ],
    )
    b.graph(
        "Age of the last successful poll",
        "suffix: intervals",
        "Time since the last successful poll, in poll intervals.",
        [
            Query(
                f"(time() - sparki_last_poll_success_timestamp_seconds{T})"
                f" / (sparki_poll_interval_seconds{T} > 0)",
                "{{adapter}}/{{target}}",
            )
        ],
        signal="poll_stale",
    )
    b.row("Headline signals")
    b.graph(
        "PostgreSQL statement latency p95",
        "s",
        "95th percentile statement execution time per target and database.",
        [Query(f"{c.PG_LATENCY.format(q='p95')}{T}", "{{target}} {{datname}}")],
        signal="postgres_statement_latency",
    )
    b.graph(
        "PostgreSQL connections used",
        "percentunit",
        "Client connections as a share of max_connections (minus reserved slots).",
        [Query(f"{c.PG_CONN_UTIL}{T}", "{{target}}")],
        signal="postgres_connections",
        maximum=1,
    )
    b.graph(
        "Redis command latency p95",
        "s",
        "95th percentile server-side latency over all commands, per target.",
        [Query(f"{c.REDIS_LATENCY.format(q='p95')}{T}", "{{target}}")],
        signal="redis_command_latency",
    )
    b.graph(
        "Redis memory used",
        "percentunit",
        "used_memory as a share of maxmemory, or of the host's memory where maxmemory is unset.",
        [Query(f"{c.REDIS_MEM_UTIL}{T}", "{{target}}")],
        signal="redis_memory",
        maximum=1,
    )
    return b.build()


def postgres(thresholds: Thresholds) -> dict[str, Any]:
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
        quantile_queries(c.PG_LATENCY, td, "{{target}} {{datname}}"),
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
        [Query(f"{c.PG_CONN_UTIL}{T}", "{{target}}")],
        signal="postgres_connections",
        maximum=1,
    )
    b.graph(
        "Transactions",
        "ops",
        "Committed plus rolled back transactions per second, per database.",
        [Query(f"{c.PG_XACT_RATE}{td}", "{{target}} {{datname}}")],
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
        [Query(f"{c.PG_HIT_RATIO}{td}", "{{target}} {{datname}}")],
        signal="postgres_cache_hit_ratio",
        minimum=None,
        maximum=1,
    )
    b.graph(
        "Blocks accessed",
        "ops",
        "Buffer hits plus disk reads per second, per database.",
        [Query(f"{c.PG_BLOCKS_RATE}{td}", "{{target}} {{datname}}")],
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
    from ..adapters.postgres.catalog import health_rows

    health_rows(b, thresholds)
    return b.build()


def redis(thresholds: Thresholds) -> dict[str, Any]:
    b = Board(
        thresholds,
        "sparki-redis",
        "Sparki storage / Redis",
        "Redis and Valkey targets: server-side command latency, memory, evictions, hit "
        "ratio and throughput.",
        [datasource_variable(), target_variable("redis")],
    )
    common_panels(b, "redis")
    b.row("Cluster (Redis Cluster targets only)")
    b.stat(
        "Cluster nodes up",
        "none",
        "1 when the exporter could poll the node; a down node fails its slots' clients"
        " while the target as a whole still polls.",
        [Query(f"max without (role) (sparki_redis_node_up{T})", "{{target}} {{node}}")],
        signal="redis_node_down",
        width=12,
        mappings=UP_MAPPINGS,
    )
    b.stat(
        "Cluster state",
        "none",
        "1 when CLUSTER INFO reports cluster_state:ok.",
        [Query(f"sparki_redis_cluster_state_ok{T}", "{{target}}")],
        signal="redis_cluster_state",
        width=12,
        mappings=UP_MAPPINGS,
    )
    b.row("Latency")
    b.graph(
        "Command latency p50 / p95 / p99",
        "s",
        "Server-side latency over all commands, from LATENCY HISTOGRAM.",
        quantile_queries(c.REDIS_LATENCY, T, "{{target}}"),
        signal="redis_command_latency",
    )
    b.graph(
        "Command latency p95 by command",
        "s",
        "95th percentile per command (the capped set; the rest is 'other').",
        [
            Query(
                "histogram_quantile(0.95, sum by (le, target, cmd) "
                f"(rate(sparki_redis_command_duration_seconds_bucket{T}[{RATE}])))",
                "{{target}} {{cmd}}",
            )
        ],
        signal="redis_command_latency",
    )
    b.graph(
        "PING round trip p50 / p95 / p99",
        "s",
        "Round trip of the PING the exporter sends every poll, network included.",
        histogram_quantiles("sparki_redis_probe_duration_seconds", T, "target", "{{target}}"),
    )
    b.graph(
        "Commands",
        "ops",
        "Commands processed per second.",
        [Query(f"{c.REDIS_CMD_RATE}{T}", "{{target}}")],
    )
    b.row("Memory and keyspace")
    b.graph(
        "Memory used / limit",
        "percentunit",
        "used_memory as a share of maxmemory, or of the host's memory where maxmemory is unset.",
        [Query(f"{c.REDIS_MEM_UTIL}{T}", "{{target}} {{node}}")],
        signal="redis_memory",
        maximum=1,
    )
    b.graph(
        "Memory",
        "bytes",
        "used_memory and maxmemory (maxmemory only where it is set).",
        [
            Query(f"sparki_redis_memory_used_bytes{T}", "{{target}} {{node}} used"),
            Query(f"sparki_redis_memory_max_bytes{T} > 0", "{{target}} {{node}} maxmemory"),
        ],
    )
    b.graph(
        "Evictions",
        "ops",
        "Keys evicted per second because of maxmemory.",
        [Query(f"{c.REDIS_EVICT_RATE}{T}", "{{target}}")],
        signal="redis_evictions",
    )
    b.graph(
        "Keyspace hit ratio",
        "percentunit",
        "Share of key lookups that found the key (shown while there are lookups).",
        [Query(f"{c.REDIS_HIT_RATIO}{T}", "{{target}}")],
        signal="redis_hit_ratio",
        minimum=None,
        maximum=1,
    )
    b.graph(
        "Key lookups",
        "ops",
        "Keyspace hits plus misses per second.",
        [Query(f"{c.REDIS_LOOKUP_RATE}{T}", "{{target}}")],
    )
    b.graph(
        "Connected clients",
        "short",
        "Client connections, the exporter's own included.",
        [Query(f"sparki_redis_connected_clients{T}", "{{target}} {{node}}")],
    )
    return b.build()


def s3(thresholds: Thresholds) -> dict[str, Any]:
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
        quantile_queries(c.S3_CANARY_LATENCY, T, "{{target}} {{operation}}"),
        signal="s3_canary_latency",
    )
    b.graph(
        "Canary failure ratio",
        "percentunit",
        "Share of canary operations that failed, per operation.",
        [Query(f"{c.S3_CANARY_FAIL}{T}", "{{target}} {{operation}}")],
        signal="s3_canary_failure_ratio",
        maximum=1,
    )
    b.graph(
        "Canary operations",
        "ops",
        "Canary operations attempted per second.",
        [Query(f"{c.S3_CANARY_RATE}{T}", "{{target}} {{operation}}")],
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
        [Query(f"{c.S3_REQ_RATE}{T}", "{{target}} {{bucket}}")],
    )
    b.graph(
        "Error ratio",
        "percentunit",
        "Share of requests answered with 4xx or 5xx; the alert watches 5xx only.",
        [Query(f"{c.S3_ERR_RATIO}{T}", "{{target}} {{bucket}} {{class}}")],
        signal="s3_request_error_ratio",
        maximum=1,
    )
    b.graph(
        "Transfer",
        "Bps",
        "Bytes downloaded and uploaded per second.",
        [Query(f"{c.S3_XFER_RATE}{T}", "{{target}} {{bucket}} {{direction}}")],
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
        [Query(f"{c.S3_COST}{T}", "{{target}}")],
        width=12,
    )
    return b.build()


_LEGACY_DASHBOARDS = {
    "dashboards/sparki-postgres.json": postgres,
    "dashboards/sparki-redis.json": redis,
    "dashboards/sparki-s3.json": s3,
}

# The overview is the core's; each adapter's board comes from its catalog's
# ``dashboard(thresholds)`` (built with this module's Board), so a new adapter brings
# its own board. (Boards still listed in _LEGACY_DASHBOARDS are being moved.)
DASHBOARDS = {
    "dashboards/sparki-overview.json": overview,
    **_LEGACY_DASHBOARDS,
    **{
        f"dashboards/sparki-{name}.json": catalog.dashboard
        for name, catalog in c.CATALOGS.items()
        if hasattr(catalog, "dashboard")
    },
}


def check_sdk_version() -> None:
    """Refuse to generate with an SDK other than the pinned one."""
    name, _, wanted = c.SDK_REQUIREMENT.partition("==")
    found = importlib.metadata.version(name)
    if found != wanted:
        raise ImportError(f"{name} {found} is installed, the dashboards need {c.SDK_REQUIREMENT}")


def render(thresholds: Thresholds) -> dict[str, str]:
    """Every dashboard's JSON, by path relative to the repository root."""
    check_sdk_version()
    return {
        path: json.dumps(build(thresholds), indent=2, sort_keys=True) + "\n"
        for path, build in DASHBOARDS.items()
    }
