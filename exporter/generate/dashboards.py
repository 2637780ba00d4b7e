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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from ..adapters.redis import catalog as redis_catalog
from . import catalog as c
from .promql import with_matchers
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
        env = env_matchers(self.thresholds)
        return [
            prometheus.Dataquery()
            .expr(with_matchers(q.expr, env))
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
        # The data source first, then where the data comes from (job, instance, the
        # cluster labels of thresholds.yaml), then the board's own (target, ...): every
        # query is narrowed by all of them (_targets, _narrow_variables).
        variables = [*self.variables[:1], *env_variables(self.thresholds), *self.variables[1:]]
        for variable in variables:
            board = board.with_variable(variable)
        for kind, item in self.items:
            board = board.with_row(item) if kind == "row" else board.with_panel(item)
        data: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
        _narrow_variables(data, self.thresholds)
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


ENV_SOURCE = "sparki_exporter_build_info"


def env_labels(thresholds: Thresholds) -> list[str]:
    """The labels that say which exporter a series came from: job, instance, cluster."""
    return ["job", "instance", *thresholds.cluster_labels]


def env_matchers(thresholds: Thresholds) -> str:
    return ",".join(f'{name}=~"${name}"' for name in env_labels(thresholds))


def env_variables(thresholds: Thresholds) -> list[Any]:
    """job, instance and one variable per cluster label, each narrowed by the ones before
    (instance by job, ...): a Grafana with several environments shows one at a time."""
    out = []
    before: list[str] = []
    for name in env_labels(thresholds):
        selector = ",".join(f'{b}=~"${b}"' for b in before)
        source = f"{ENV_SOURCE}{{{selector}}}" if selector else ENV_SOURCE
        query = f"label_values({source}, {name})"
        title = {"job": "Job", "instance": "Instance"}.get(name, name.replace("_", " ").title())
        out.append(query_variable(name, title, query))
        before.append(name)
    return out


_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)$")


def _narrow_variables(data: dict[str, Any], thresholds: Thresholds) -> None:
    """The board's own query variables (target, ...) list only the chosen environment's."""
    env = set(env_labels(thresholds))
    matchers = env_matchers(thresholds)
    for variable in data.get("templating", {}).get("list", []):
        if variable.get("type") != "query" or variable.get("name") in env:
            continue
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text or "")
        if not match:
            continue
        narrowed = f"label_values({with_matchers(match.group(1), matchers)}, {match.group(2)})"
        if isinstance(query, dict):
            query["query"] = narrowed
        else:
            variable["query"] = narrowed
        if variable.get("definition") == text:
            variable["definition"] = narrowed


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


YES_NO_MAPPINGS = [
    dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="NO", color="red", index=0),
            "1": dm.ValueMappingResult(text="YES", color="green", index=1),
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
        width=4,
        mappings=UP_MAPPINGS,
    )
    b.stat(
        "Last config reload",
        "none",
        "1 when the exporter's last configuration reload succeeded; 0 means it still"
        " runs the previous configuration.",
        [Query("sparki_exporter_config_last_reload_successful", "{{instance}}")],
        signal="config_reload_failed",
        width=4,
        mappings=[
            dm.ValueMap(
                options={
                    "0": dm.ValueMappingResult(text="REJECTED", color="orange", index=0),
                    "1": dm.ValueMappingResult(text="OK", color="green", index=1),
                }
            )
        ],
    )
    b.stat(
        "Last web config reload",
        "none",
        "1 when the last reload of --web.config.file (TLS certificate, users) succeeded;"
        " 0 means the previous certificate is still served. No data: no web config.",
        [Query("sparki_exporter_web_config_last_reload_successful", "{{instance}}")],
        signal="web_config_reload_failed",
        width=4,
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
        [Query(f"{redis_catalog.REDIS_LATENCY.format(q='p95')}{T}", "{{target}}")],
        signal="redis_command_latency",
    )
    b.graph(
        "Redis memory used",
        "percentunit",
        "used_memory as a share of maxmemory, or of the host's memory where maxmemory is unset.",
        [Query(f"{redis_catalog.REDIS_MEM_UTIL}{T}", "{{target}}")],
        signal="redis_memory",
        maximum=1,
    )
    return b.build()


# The overview is the core's; each adapter's board comes from its catalog's
# ``dashboard(thresholds)`` (built with this module's Board), so a new adapter brings
# its own board.
DASHBOARDS = {
    "dashboards/sparki-overview.json": overview,
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
