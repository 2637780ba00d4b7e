"""Grafana dashboards: valid, consistent with thresholds.yaml, and reading real names.

The dashboards are generated (tests/test_rules.py proves the committed files are
current); these tests check what they contain.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from test_rules import (
    NOT_IN_A_PLAIN_SCRAPE,
    PROMTOOL,
    ROOT,
    WEB_CONFIG_ONLY,
    real_scrape_names,
    recording_rules,
    thresholds,
)

from exporter.generate import catalog, promql

DASHBOARD_DIR = ROOT / "dashboards"
TAG = re.compile(r"rules/thresholds\.yaml \(([a-z0-9_]+)\)")
HEADLINE = (
    "postgres_statement_latency",
    "postgres_connections",
    "redis_command_latency",
    "redis_memory",
)


def dashboards() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        out[path.name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # collapsed rows keep theirs inside
    return out


def data_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in all_panels(board) if p["type"] != "row"]


def expressions(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in data_panels(board) for t in p.get("targets", [])]


def variable_queries(board: dict[str, Any]) -> list[str]:
    return [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]


def test_the_dashboards_exist() -> None:
    assert set(dashboards()) == {
        "sparki-overview.json",
        "sparki-postgres.json",
        "sparki-redis.json",
        "sparki-s3.json",
        "sparki-mysql.json",
        "sparki-memcached.json",
        "sparki-etcd.json",
        "sparki-nats.json",
        "sparki-lsm.json",
    }


def test_valid_json_with_unique_uids_and_panel_ids() -> None:
    boards = dashboards()
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)
    titles = [b["title"] for b in boards.values()]
    assert len(set(titles)) == len(titles)
    for name, board in boards.items():
        ids = [p["id"] for p in all_panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        assert all(isinstance(i, int) and i > 0 for i in ids)
        for panel in all_panels(board):
            pos = panel["gridPos"]
            assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, (name, panel["id"])
        assert board["schemaVersion"] >= 39
        assert "sparki" in board["tags"]


EXPORTER_LEVEL = re.compile(r"^(up\{job=|sparki_exporter_)")


def test_datasource_and_target_variables() -> None:
    for name, board in dashboards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        ds = variables["datasource"]
        assert ds["type"] == "datasource" and ds["query"] == "prometheus", name
        target = variables["target"]
        assert target["type"] == "query", name
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert promql.label_values_metric(target["query"]) == "sparki_up", name
        assert target["query"].endswith(", target)")
        assert target["multi"] and target["includeAll"]
        for panel in data_panels(board):
            assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
            for query in panel["targets"]:
                assert query["datasource"]["uid"] == "${datasource}"
                if EXPORTER_LEVEL.search(query["expr"]):
                    continue  # the exporter's own series have no target
                assert "$target" in query["expr"], (name, panel["title"], query["expr"])


def test_every_panel_has_a_unit() -> None:
    for name, board in dashboards().items():
        for panel in data_panels(board):
            unit = panel["fieldConfig"]["defaults"].get("unit")
            assert unit, f"{name}: panel {panel['title']!r} has no unit"


def test_threshold_steps_come_from_thresholds_yaml() -> None:
    th = thresholds()
    seen: set[str] = set()
    for name, board in dashboards().items():
        for panel in data_panels(board):
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps[0]["value"] is None, "the base step must be the first"
            values = [s["value"] for s in steps[1:]]
            assert values == sorted(values)
            match = TAG.search(panel.get("description", ""))
            if not match:
                assert values == [], f"{name}: {panel['title']!r} has untagged thresholds"
                continue
            key = match.group(1)
            seen.add(key)
            signal = catalog.SIGNALS_BY_KEY[key]
            st = th[key]
            assert set(values) == {lv.threshold for lv in st.levels}, (name, panel["title"])
            colour = {s["value"]: s["color"] for s in steps}
            warning, critical = st.level("warning"), st.level("critical")
            if signal.direction == "above":
                assert colour[None] == "green"
                if warning:
                    assert colour[warning.threshold] == "orange"
                if critical:
                    assert colour[critical.threshold] == "red"
            else:
                assert colour[None] == ("red" if critical else "orange")
                healthy = warning or critical
                assert healthy is not None
                assert colour[healthy.threshold] == "green"
            if panel["type"] == "timeseries":
                style = panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"]
                assert style != "off", (name, panel["title"])
    # Every alerted signal is on some dashboard, with its lines.
    assert seen == {s.key for s in catalog.SIGNALS}


def test_overview_shows_targets_and_the_headline_signals() -> None:
    board = dashboards()["sparki-overview.json"]
    tags = {m.group(1) for p in data_panels(board) if (m := TAG.search(p.get("description", "")))}
    assert {"target_down", *HEADLINE} <= tags
    assert any(t["expr"].startswith("sparki_up{") for p in data_panels(board) for t in p["targets"])


def test_adapter_dashboards_have_percentile_panels() -> None:
    for name in ("sparki-postgres.json", "sparki-redis.json", "sparki-s3.json"):
        board = dashboards()[name]
        found = []
        for panel in data_panels(board):
            legends = [t["legendFormat"].split()[0] for t in panel["targets"]]
            if legends == ["p50", "p95", "p99"]:
                exprs = [t["expr"] for t in panel["targets"]]
                for q, expr in zip(("0.5", "0.95", "0.99"), exprs, strict=True):
                    from_record = re.search(rf":p{q.split('.')[1].ljust(2, '0')}_rate5m\{{", expr)
                    from_histogram = f"histogram_quantile({q}," in expr and "_bucket{" in expr
                    assert from_record or from_histogram, (name, expr)
                assert panel["fieldConfig"]["defaults"]["unit"] == "s"
                found.append(panel["title"])
        assert found, f"{name}: no p50/p95/p99 panel"


def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool has no offline query parser; a recording rule per expression is one."""
    rules = []
    for name, board in dashboards().items():
        for expr in expressions(board):
            rules.append(
                {"record": f"dashboard:check:n{len(rules)}", "expr": promql.from_grafana(expr)}
            )
        for query in variable_queries(board):
            selector = re.fullmatch(r"label_values\((.+), *[a-z_]+\)", query)
            assert selector, (name, query)
            rules.append(
                {
                    "record": f"dashboard:check:n{len(rules)}",
                    "expr": promql.from_grafana(selector.group(1)),
                }
            )
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def dashboard_metric_names() -> set[str]:
    names: set[str] = set()
    for board in dashboards().values():
        for expr in expressions(board):
            names |= promql.metric_names(expr)
        for query in variable_queries(board):
            metric = promql.label_values_metric(query)
            assert metric, query
            names.add(metric)
    return names


async def test_dashboard_metric_names_are_in_a_real_scrape(
    start_exporter: Callable[..., Any],
    pg_primary: Any,
    pg_standby: Any,
    redis_server: Any,
    s3_server: Any,
    mysql_server: Any,
    memcached_server: Any,
    etcd_server: Any,
    nats_server: Any,
    badger_host: Any,
) -> None:
    used = dashboard_metric_names()
    assert "sparki_up" in used and catalog.PG_CONN_UTIL in used
    names = await real_scrape_names(
        start_exporter,
        pg_primary,
        redis_server,
        s3_server,
        pg_standby,
        mysql_server,
        memcached_server,
        etcd_server,
        nats_server,
        badger_host,
    )
    recorded = {r["record"] for r in recording_rules()}
    missing = used - names - recorded - NOT_IN_A_PLAIN_SCRAPE - WEB_CONFIG_ONLY
    assert not missing, f"dashboards read names nobody produces: {sorted(missing)}"


ENV = ('job=~"$job"', 'instance=~"$instance"', 'cluster=~"$cluster"')


def test_every_selector_honours_job_instance_and_cluster() -> None:
    """One Grafana over several environments: every panel query and the target list
    are narrowed by the job, instance and cluster variables (issue 15)."""
    for name, board in dashboards().items():
        variables = [v["name"] for v in board["templating"]["list"]]
        assert variables[:4] == ["datasource", "job", "instance", "cluster"], name
        own = [v["query"] for v in board["templating"]["list"][4:] if v["type"] == "query"]
        selectors = [re.sub(r"^label_values\((.+), *\w+\)$", r"\1", q) for q in own]
        assert selectors, name
        for expr in [*expressions(board), *selectors]:
            for metric in promql.metric_names(expr):
                for m in re.finditer(rf"(?<![\w:]){re.escape(metric)}(?![\w:])", expr):
                    rest = expr[m.end() :]
                    if rest.lstrip().startswith("("):
                        continue  # a function
                    braces = re.match(r"\{([^}]*)\}", rest)
                    assert braces, (name, expr, metric)
                    for matcher in ENV:
                        assert matcher in braces.group(1), (name, expr, metric)


def test_matchers_are_added_where_a_selector_is_and_nowhere_else() -> None:
    m = 'job=~"$job"'
    cases = {
        'sum by (le, cmd) (rate(x_bucket{a="b"}[$__rate_interval]))': (
            'sum by (le, cmd) (rate(x_bucket{a="b",job=~"$job"}[$__rate_interval]))'
        ),
        "sum without (node) (a_total) / ignoring (class) b": (
            'sum without (node) (a_total{job=~"$job"}) / ignoring (class) b{job=~"$job"}'
        ),
        'label_replace(x, "a", "$1", "b", "(.*)") > bool 1e3': (
            'label_replace(x{job=~"$job"}, "a", "$1", "b", "(.*)") > bool 1e3'
        ),
        "(time() - ts) / (iv > 0) or vector(0)": (
            '(time() - ts{job=~"$job"}) / (iv{job=~"$job"} > 0) or vector(0)'
        ),
        "x offset 5m": 'x{job=~"$job"} offset 5m',
    }
    for expr, want in cases.items():
        assert promql.with_matchers(expr, m) == want
