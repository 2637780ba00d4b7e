"""Recording and alerting rules: generated from thresholds.yaml, valid, unit-tested, real.

- the committed generated files equal a fresh generation (and `generate --check` agrees);
- promtool accepts every rule file and the PrometheusRule's groups;
- promtool's unit tests pass, cover every alert and severity, and fail when a shipped
  threshold, `for` or guard is changed (so they exercise what ships);
- every metric name a rule reads is in a real scrape of the exporter polling real
  PostgreSQL, Redis and S3 servers, or is a recording rule's output.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import generate
from exporter.adapters.redis import catalog as redis_catalog
from exporter.adapters.s3 import catalog as s3_catalog
from exporter.generate import catalog, promql, promtests, rules
from exporter.generate.thresholds import Thresholds, ThresholdsError, load, parse

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMTOOL_TESTS = ROOT / "tests" / "promtool"
RULE_FILES = (rules.RECORDING_FILE, rules.ALERTS_FILE)
ADAPTER_PREFIX = {
    "common": "Sparki",
    "postgres": "SparkiPostgres",
    "redis": "SparkiRedis",
    "s3": "SparkiS3",
    "mysql": "SparkiMysql",
    "memcached": "SparkiMemcached",
    "etcd": "SparkiEtcd",
    "nats": "SparkiNats",
    "lsm": "SparkiLsm",
}


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def thresholds() -> Thresholds:
    return load(ROOT / generate.THRESHOLDS_FILE)


def yaml_file(rel: str) -> Any:
    text = (ROOT / rel).read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    return docs[0]


def alert_rules() -> list[dict[str, Any]]:
    return [
        {**rule, "group": group["name"]}
        for group in yaml_file(rules.ALERTS_FILE)["groups"]
        for rule in group["rules"]
    ]


def recording_rules() -> list[dict[str, Any]]:
    return [r for g in yaml_file(rules.RECORDING_FILE)["groups"] for r in g["rules"]]


# --- one source ---------------------------------------------------------------------------


def test_generated_files_are_committed_and_current() -> None:
    files = generate.render_all(ROOT)
    assert set(files) >= {
        rules.RECORDING_FILE,
        rules.ALERTS_FILE,
        rules.PROMETHEUS_RULE_FILE,
        "dashboards/sparki-overview.json",
        generate.RUNBOOKS_FILE,
    }
    differ = [
        rel
        for rel, text in sorted(files.items())
        if not (ROOT / rel).exists() or (ROOT / rel).read_text(encoding="utf-8") != text
    ]
    assert not differ, f"run `sparki-exporter generate` and commit: {differ}"
    assert not generate.stale_files(ROOT, files)


def test_generate_writes_everything_and_check_catches_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / generate.THRESHOLDS_FILE, tmp_path / generate.THRESHOLDS_FILE)
    shutil.copy(ROOT / generate.RUNBOOKS_FILE, tmp_path / generate.RUNBOOKS_FILE)
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1  # nothing generated yet
    assert generate.main(["--root", str(tmp_path)]) == 0
    for rel in generate.render_all(ROOT):
        assert (tmp_path / rel).read_text() == (ROOT / rel).read_text(), rel
    capsys.readouterr()
    assert generate.main(["--check", "--root", str(tmp_path)]) == 0

    # A threshold changed without regenerating: --check names every file it affects.
    path = tmp_path / generate.THRESHOLDS_FILE
    path.write_text(
        path.read_text().replace("threshold: 0.05, for: 10m", "threshold: 0.06, for: 10m")
    )
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for rel in (rules.ALERTS_FILE, rules.PROMETHEUS_RULE_FILE, "dashboards/sparki-overview.json"):
        assert f"out of date: {rel}" in out
    assert "sparki-recording" not in out  # recordings hold no thresholds

    # A stale generated file is reported too.
    (tmp_path / "dashboards" / "old.json").write_text("{}")
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    assert "(stale): dashboards/old.json" in capsys.readouterr().out


def test_generate_rejects_thresholds_that_do_not_fit(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    base = (ROOT / generate.THRESHOLDS_FILE).read_text()
    bad = {
        "too short a for": base.replace(
            "warning: {threshold: 0.05, for: 10m}", "warning: {threshold: 0.05, for: 5m}"
        ),
        "warning stricter than critical": base.replace(
            "warning: {threshold: 0.8, for: 5m}\n    critical: {threshold: 0.95",
            "warning: {threshold: 0.97, for: 5m}\n    critical: {threshold: 0.95",
        ),
        "unknown signal": base
        + "  made_up:\n    reason: x\n    warning: {threshold: 1, for: 5m}\n",
        "min_rate missing": base.replace("    min_rate: 50\n", ""),
    }
    for what, text in bad.items():
        assert text != base, what
        (tmp_path / generate.THRESHOLDS_FILE).write_text(text)
        assert generate.main(["--check", "--root", str(tmp_path)]) == 2, what


def test_rules_carry_the_values_of_thresholds_yaml() -> None:
    th = thresholds()
    by_key = {(r["alert"], r["labels"]["severity"]): r for r in alert_rules()}
    assert len(by_key) == len(alert_rules()), "one rule per alert and severity"
    for signal in catalog.SIGNALS:
        st = th[signal.key]
        for level in st.levels:
            rule = by_key.pop((signal.alert, level.severity))
            assert rule["for"] == level.hold
            value = catalog.resolve(signal.value, th.exporter_job)
            assert rule["expr"].startswith(f"{value} {signal.op} {catalog.number(level.threshold)}")
            if st.min_rate is not None:
                assert rule["expr"].endswith(f">= {catalog.number(st.min_rate)}")
            # Data alerts hold through an outage; the exporter's own series never vanish
            # with a target, so those resolve as soon as they clear.
            keep = rule.get("keep_firing_for")
            assert keep == (None if signal.adapter == "common" else th.keep_firing_for)
            if signal.adapter != "common":
                assert rule["labels"]["adapter"] == signal.adapter
    watchdog = by_key.pop((catalog.WATCHDOG, rules.WATCHDOG_SEVERITY))
    assert watchdog["expr"] == "vector(1)" and "for" not in watchdog
    assert not by_key, f"rules without a threshold in thresholds.yaml: {sorted(by_key)}"


def test_every_runbook_url_is_absolute() -> None:
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert re.match(r"^https?://[^/]+/.*#[a-z0-9-]+$", url), url


@pytest.mark.parametrize(
    "url", ["docs/runbooks.md", "/docs/runbooks.md", "file:///runbooks.md", "https://x/y#a", ""]
)
def test_the_generator_refuses_a_relative_runbook_url(url: str) -> None:
    data = yaml.safe_load((ROOT / "rules" / "thresholds.yaml").read_text())
    data["runbook_url"] = url
    with pytest.raises(ThresholdsError, match="runbook_url"):
        parse(data)


def test_the_generator_refuses_a_critical_level_for_a_cause() -> None:
    data = yaml.safe_load((ROOT / "rules" / "thresholds.yaml").read_text())
    data["signals"]["redis_hit_ratio"]["critical"] = {"threshold": 0.3, "for": "15m"}
    with pytest.raises(ThresholdsError, match=r"redis_hit_ratio\.critical: .*cause"):
        rules.check_catalogue(parse(data))


def test_only_symptoms_page() -> None:
    th = thresholds()
    paging = {s.alert for s in catalog.SIGNALS if th[s.key].level("critical")}
    for cause in (
        "SparkiRedisHitRatioLow",
        "SparkiPostgresCacheHitRatioLow",
        "SparkiRedisEvictionsHigh",
    ):
        assert cause not in paging
    for symptom in (
        "SparkiPostgresStatementLatencyHigh",
        "SparkiTargetDown",
        "SparkiExporterDown",
        "SparkiRedisNodeDown",
        "SparkiS3CanaryFailing",
    ):
        assert symptom in paging
    # A target that stays down pages within 5 minutes (for + 1 minute of evaluation and
    # Alertmanager's group_wait).
    crit = th["target_down"].level("critical")
    assert crit is not None and crit.hold_seconds + 60 <= 300


def test_latency_alerts_have_a_minimum_traffic() -> None:
    th = thresholds()
    for key in ("postgres_statement_latency", "redis_command_latency", "s3_canary_latency"):
        assert th[key].min_rate is not None, key
        for rule in alert_rules():
            if rule["alert"] == catalog.SIGNALS_BY_KEY[key].alert:
                assert " and " in rule["expr"] and rule["expr"].endswith(
                    f">= {catalog.number(th[key].min_rate)}"
                )


def test_prometheusrule_has_the_same_groups() -> None:
    manifest = yaml_file(rules.PROMETHEUS_RULE_FILE)
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"]["name"]
    groups = yaml_file(rules.RECORDING_FILE)["groups"] + yaml_file(rules.ALERTS_FILE)["groups"]
    assert manifest["spec"]["groups"] == groups


# --- promtool -----------------------------------------------------------------------------


def test_promtool_checks_every_rule_file(tmp_path: Path) -> None:
    manifest = tmp_path / "prometheusrule-groups.yml"
    manifest.write_text(
        yaml.safe_dump({"groups": yaml_file(rules.PROMETHEUS_RULE_FILE)["spec"]["groups"]})
    )
    for path in [*(ROOT / r for r in RULE_FILES), manifest]:
        result = run_promtool("check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    files = sorted(p.name for p in PROMTOOL_TESTS.glob("*.test.yml"))
    assert files == [f"sparki-{a}.test.yml" for a in sorted(catalog.ADAPTERS)]
    result = run_promtool("test", "rules", *files, cwd=PROMTOOL_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files)


def unit_test_groups() -> list[dict[str, Any]]:
    out = []
    for path in sorted(PROMTOOL_TESTS.glob("*.test.yml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == [f"../../{r}" for r in RULE_FILES], path
        out += doc["tests"]
    return out


def test_unit_tests_cover_every_alert_and_severity() -> None:
    groups = unit_test_groups()
    for rule in alert_rules():
        alert, sev = rule["alert"], rule["labels"]["severity"]
        if alert == catalog.WATCHDOG:
            assert any(g["name"].startswith(alert) for g in groups)
            continue
        mine = [g for g in groups if g["name"].startswith(f"{alert} {sev}: ")]

        def kind(word: str, mine: list[dict[str, Any]] = mine) -> list[dict[str, Any]]:
            return [g for g in mine if word in g["name"]]

        # Just past the threshold: fires, with severity and target, and not too early.
        fires = kind("just past")
        assert len(fires) == 1, (alert, sev)
        checks = fires[0]["alert_rule_test"]
        firing = [
            a["exp_labels"]
            for c in checks
            for a in c["exp_alerts"]
            if a["exp_labels"]["severity"] == sev
        ]
        signal = next(s for s in catalog.SIGNALS if s.alert == alert)
        assert firing and all(set(signal.labels) <= set(labels) for labels in firing), (
            alert,
            sev,
        )
        assert any(
            all(a["exp_labels"]["severity"] != sev for a in c["exp_alerts"]) for c in checks
        ), f"{alert}/{sev}: no check that it waits for its `for`"
        # Just short: silent at this severity.
        silent = kind("just short")
        assert len(silent) == 1, (alert, sev)
        for c in silent[0]["alert_rule_test"]:
            assert all(a["exp_labels"]["severity"] != sev for a in c["exp_alerts"])
        # A breach shorter than `for`: seen pending, never fired.
        clears = kind("clears before for")
        assert len(clears) == 1, (alert, sev)
        exprs = [t["expr"] for t in clears[0]["promql_expr_test"]]
        assert any('alertstate="pending"' in e and f'severity="{sev}"' in e for e in exprs)
        assert any('alertstate="firing"' in e and f'severity="{sev}"' in e for e in exprs)
        # Ratios: silent on too little traffic.
        if "and" in rule["expr"].split():
            assert len(kind("below min_rate")) == 1, (alert, sev)


Mutant = tuple[str, Callable[[Path], None], str, str]


# Names a rule reads that a scrape of single-node servers cannot show: Prometheus' own
# `up`, and series only a Redis Cluster target has (the adapter's source must emit them).
# Only from a Galera node with the galera collector on; tests/test_mysql_galera.py
# reads them from a real node's scrape.
GALERA_ONLY = {
    "sparki_mysql_galera_cluster_size",
    "sparki_mysql_galera_cluster_primary",
    "sparki_mysql_galera_ready",
}
NOT_IN_A_PLAIN_SCRAPE = {
    "up",
    "sparki_redis_node_up",
    "sparki_redis_cluster_state_ok",
    *GALERA_ONLY,
}
# Only with --web.config.file; test_webconfig reads it from a real TLS scrape.
WEB_CONFIG_ONLY = {"sparki_exporter_web_config_last_reload_successful"}


def test_cluster_only_names_are_emitted_by_the_redis_adapter() -> None:
    package = ROOT / "exporter" / "adapters" / "redis"
    source = "".join(path.read_text() for path in sorted(package.glob("*.py")))
    for name in NOT_IN_A_PLAIN_SCRAPE - {"up"} - GALERA_ONLY:
        assert f'"{name}"' in source, name


def anchor_of(rule: dict[str, Any]) -> str:
    return str(rule["annotations"]["runbook_url"].partition("#")[2])


def _mutants() -> list[Mutant]:
    """(what, how to break the copied rule files, the promtool test file that must notice,
    the alert whose cases are enough to notice it, or "" for the whole file)."""
    th = thresholds()
    out: list[Mutant] = []

    def edit_rule(
        alert: str, severity: str, key: str, old: str, new: str
    ) -> Callable[[Path], None]:
        def apply(root: Path) -> None:
            path = root / rules.ALERTS_FILE
            doc = yaml.safe_load(path.read_text())
            hits = 0
            for group in doc["groups"]:
                for rule in group["rules"]:
                    if rule["alert"] == alert and rule["labels"]["severity"] == severity:
                        assert old in rule[key], (rule[key], old)
                        rule[key] = rule[key].replace(old, new, 1)
                        hits += 1
            assert hits == 1
            path.write_text(rules.dump(doc))

        return apply

    for signal in catalog.SIGNALS:
        st = th[signal.key]
        test_file = f"sparki-{signal.adapter}.test.yml"
        for level in st.levels:
            if signal.unit == "bool":
                moved = 0.0  # `< 0` can never fire
            elif signal.direction == "above":
                moved = level.threshold * 1.05
            else:
                moved = level.threshold * 0.95
            compare = f"{signal.op} {catalog.number(level.threshold)}"
            sev = level.severity
            out.append(
                (
                    f"{signal.alert}/{sev}: threshold {level.threshold} -> {moved:g}",
                    edit_rule(
                        signal.alert, sev, "expr", compare, f"{signal.op} {catalog.number(moved)}"
                    ),
                    test_file,
                    signal.alert,
                )
            )
            out.append(
                (
                    f"{signal.alert}/{sev}: for {level.hold} -> 1m shorter",
                    edit_rule(signal.alert, sev, "for", level.hold, f"{level.hold_minutes - 1}m"),
                    test_file,
                    signal.alert,
                )
            )

    def text_mutant(rel: str, old: str, new: str) -> Callable[[Path], None]:
        def apply(root: Path) -> None:
            text = (root / rel).read_text()
            assert old in text, old
            (root / rel).write_text(text.replace(old, new))

        return apply

    out += [
        (
            "Redis memory ratio keeps the role label (a failover restarts the alert)",
            text_mutant(
                rules.RECORDING_FILE,
                "max without (role) (sparki_redis_memory_used_bytes)",
                "sparki_redis_memory_used_bytes",
            ),
            "sparki-redis.test.yml",
            "SparkiRedisMemoryHigh:",
        ),
        (
            "data alerts without keep_firing_for (an outage resolves a firing critical)",
            text_mutant(rules.ALERTS_FILE, "    keep_firing_for: ", "    # keep_firing_for: "),
            "sparki-postgres.test.yml",
            "SparkiPostgresStatementLatencyHigh:",
        ),
        (
            "exporter-down without its absent() guard",
            text_mutant(rules.ALERTS_FILE, ' or absent(up{job="sparki"}) * 0', ""),
            "sparki-common.test.yml",
            "SparkiExporterDown:",
        ),
        (
            "Redis memory ratio without the maxmemory > 0 guard",
            text_mutant(
                rules.RECORDING_FILE,
                "max without (role) (sparki_redis_memory_max_bytes) > 0 or",
                "max without (role) (sparki_redis_memory_max_bytes) or",
            ),
            "sparki-redis.test.yml",
            "",
        ),
        (
            "PostgreSQL cache hit alert without min_rate",
            text_mutant(
                rules.ALERTS_FILE,
                " and target_datname:sparki_postgres_blocks_accessed:rate5m >= 50",
                "",
            ),
            "sparki-postgres.test.yml",
            "",
        ),
        (
            "S3 canary failure ratio without its zero-traffic guard",
            text_mutant(
                rules.RECORDING_FILE,
                "/ (sum without (bucket) (rate(sparki_s3_probes_total[5m])) > 0)",
                "/ sum without (bucket) (rate(sparki_s3_probes_total[5m]))",
            ),
            "sparki-s3.test.yml",
            "",
        ),
        (
            "S3 error ratio alert counting 4xx too",
            text_mutant(rules.ALERTS_FILE, '{class="5xx"} >', " >"),
            "sparki-s3.test.yml",
            "",
        ),
        (
            "Redis latency percentile per command instead of over all commands",
            text_mutant(
                rules.RECORDING_FILE,
                "(0.95, sum without (cmd, node, role) (rate(sparki_redis_command_duration",
                "(0.95, sum without (node, role) (rate(sparki_redis_command_duration",
            ),
            "sparki-redis.test.yml",
            "",
        ),
    ]
    return out


MUTANTS = _mutants()


# One test per mutant, so pytest-xdist spreads the promtool runs over its workers
# (as a single test it was the longest of the suite, on one worker).
@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(MUTANTS)), ids=[m[0] for m in MUTANTS])
def test_unit_tests_fail_when_the_shipped_rules_change(tmp_path: Path, index: int) -> None:
    """Every threshold and `for` (and the guards) is pinned by some failing case."""
    what, apply, test_file, alert = MUTANTS[index]
    root = tmp_path / "m"
    (root / "rules").mkdir(parents=True)
    (root / "tests" / "promtool").mkdir(parents=True)
    for rel in RULE_FILES:
        shutil.copy(ROOT / rel, root / rel)
    doc = yaml.safe_load((PROMTOOL_TESTS / test_file).read_text())
    if alert:  # only this alert's cases: quicker, and enough to notice
        doc["tests"] = [t for t in doc["tests"] if t["name"].startswith(f"{alert} ")]
    (root / "tests" / "promtool" / test_file).write_text(yaml.safe_dump(doc))
    apply(root)
    result = run_promtool("test", "rules", test_file, cwd=root / "tests" / "promtool")
    noticed = result.returncode != 0 and "FAILED" in result.stdout + result.stderr
    assert noticed, f"the promtool tests did not notice: {what}"


# --- conventions --------------------------------------------------------------------------


def test_alert_conventions() -> None:
    th = thresholds()
    anchors = generate.runbook_anchors_in((ROOT / generate.RUNBOOKS_FILE).read_text())
    severities: dict[str, set[str]] = {}
    for rule in alert_rules():
        name = rule["alert"]
        adapter = rule["group"].removeprefix("sparki-").removesuffix(".alerts")
        prefix = ADAPTER_PREFIX[adapter]
        assert re.fullmatch(rf"{prefix}[A-Z][A-Za-z0-9]+", name), name
        if adapter == "common":
            assert not re.match(r"Sparki(Postgres|Redis|S3|Mysql)", name), name
        if name == catalog.WATCHDOG:
            assert rule["labels"] == {"severity": rules.WATCHDOG_SEVERITY}
            assert anchor_of(rule) in anchors
            continue
        assert set(rule["labels"]) == (
            {"severity"} | ({"adapter"} if adapter != "common" else set())
        )
        sev = rule["labels"]["severity"]
        assert sev in ("warning", "critical")
        assert sev not in severities.setdefault(name, set()), f"{name}: two {sev} rules"
        severities[name].add(sev)
        ann = rule["annotations"]
        assert set(ann) == {"summary", "description", "runbook_url"}
        # The alert's identifying labels are in its texts (target names, or the job for
        # the exporter's own alerts).
        signal = next(s for s in catalog.SIGNALS if s.alert == name)
        shown = "target" if "target" in signal.labels else "job"
        assert f"{{{{ $labels.{shown} }}}}" in ann["summary"], name
        assert f"{{{{ $labels.{shown} }}}}" in ann["description"], name
        assert "{{ $value" in ann["description"], name
        path, _, anchor = ann["runbook_url"].partition("#")
        assert path == th.runbook_url and path.endswith("runbooks.md")
        assert anchor == name.lower() and anchor in anchors, f"{name}: no runbook section #{anchor}"
    # The four platform thresholds are warning + critical pairs under one alert name.
    for key in (
        "postgres_statement_latency",
        "postgres_connections",
        "redis_command_latency",
        "redis_memory",
    ):
        assert severities[catalog.SIGNALS_BY_KEY[key].alert] == {"warning", "critical"}


def test_runbooks_are_written_for_every_alert() -> None:
    text = (ROOT / generate.RUNBOOKS_FILE).read_text()
    assert generate.unwritten_runbooks(text) == []
    for signal in catalog.SIGNALS:
        section = text.split(f"### {signal.alert}\n", 1)[1].split("\n#", 1)[0]
        for part in ("**Means:**", "**Impact:**", "**Check first:**", "**Fix:**"):
            assert part in section, f"{signal.alert}: {part} missing"


def test_an_adapters_runbooks_live_in_its_package() -> None:
    """Adding an adapter's alert touches its package (and thresholds.yaml), not docs/."""
    from exporter.generate import runbooks

    text = (ROOT / generate.RUNBOOKS_FILE).read_text()
    hand_written = text.partition(runbooks.ADAPTERS_BEGIN)[0]
    for signal in catalog.SIGNALS:
        heading = f"### {signal.alert}\n"
        if signal.adapter == "common":
            assert heading in hand_written, signal.alert
            continue
        assert heading not in hand_written, signal.alert
        book = ROOT / "exporter" / "adapters" / signal.adapter / "runbooks.md"
        assert heading in book.read_text(), (signal.alert, book)


def test_recording_rules_are_the_ones_the_issue_lists() -> None:
    records = {r["record"]: r["expr"] for r in recording_rules()}
    pg = catalog.CATALOGS["postgres"]
    expected = {
        *(pg.PG_LATENCY.format(q=q) for q, _ in catalog.QUANTILES),
        pg.PG_CONN_UTIL,
        pg.PG_HIT_RATIO,
        pg.PG_XACT_RATE,
        *(redis_catalog.REDIS_LATENCY.format(q=q) for q, _ in catalog.QUANTILES),
        redis_catalog.REDIS_MEM_UTIL,
        redis_catalog.REDIS_EVICT_RATE,
        redis_catalog.REDIS_HIT_RATIO,
        redis_catalog.REDIS_CMD_RATE,
        s3_catalog.S3_CANARY_LATENCY.format(q="p95"),
        s3_catalog.S3_CANARY_FAIL,
        s3_catalog.S3_REQ_RATE,
        s3_catalog.S3_ERR_RATIO,
        s3_catalog.S3_XFER_RATE,
        s3_catalog.S3_COST,
    }
    assert expected <= set(records)
    for name, expr in records.items():
        assert re.fullmatch(r"[a-z_]+:sparki_[a-z0-9_]+:[a-z0-9_]+", name), name
        if "histogram_quantile" in expr:
            assert "rate(" in expr and "_bucket[" in expr, name
        operations = name.split(":")[2]
        if "ratio" in operations or "utilization" in operations:
            divisor = expr.rsplit(" / ", 1)[1]
            divisor = re.sub(r"^(?:ignoring|on) \([^)]*\) (?:group_\w+ \([^)]*\) )?", "", divisor)
            assert divisor.startswith("(") and divisor.endswith("> 0)"), (
                f"{name}: unguarded division"
            )
    # Per node, without role: a failover keeps the series (and a firing alert) alive.
    # maxmemory where set, else the host's memory; never a division by 0.
    assert records[redis_catalog.REDIS_MEM_UTIL].endswith(
        "/ (max without (role) (sparki_redis_memory_max_bytes) > 0"
        " or max without (role) (sparki_redis_system_memory_bytes) > 0)"
    )
    assert "sum without (cmd, node, role)" in records[redis_catalog.REDIS_LATENCY.format(q="p95")]


# --- names against a real scrape ----------------------------------------------------------


async def real_scrape_names(
    start_exporter: Callable[..., Any],
    pg: Any,
    redis_server: Any,
    s3_server: Any,
    standby: Any,
    mysql_server: Any,
    memcached_server: Any,
    etcd_server: Any,
    nats_server: Any,
    badger_host: Any,
) -> set[str]:
    """Names in a scrape of an exporter polling real PostgreSQL (a primary expecting its
    standby, and the standby), Redis, S3, MySQL, Memcached, etcd and NATS servers, and
    a Go host embedding Badger."""
    import nats

    # A JetStream stream with a consumer, so the per-stream and per-consumer series exist.
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="RULES", subjects=["rules.>"], max_bytes=1_000_000)
    await js.publish("rules.a", b"m")
    await js.pull_subscribe("rules.>", "rules-consumer")
    await nc.close()
    exp = await start_exporter(
        {
            "poll_interval": "2s",
            "poll_timeout": "1.5s",
            "postgres": [
                {"name": "pg", "dsn": pg.dsn(), "expected_standbys": 1},
                {"name": "pg-standby", "dsn": standby.dsn()},
            ],
            "redis": [
                redis_server.target(
                    "cache",
                    # The design key collectors run only where patterns are configured.
                    ttl_policy={"patterns": [{"pattern": "session:*", "max_ttl": "24h"}]},
                    streams={"patterns": ["build:*:logs"]},
                )
            ],
            # CloudWatch (moto's) on, since the S3 board reads its latency gauge.
            "s3": [
                s3_server.target(
                    "store",
                    cloudwatch={"enabled": True, "endpoint_url": s3_server.endpoint_url},
                )
            ],
            "mysql": [mysql_server.target("mysql")],
            "memcached": [memcached_server.target("mc")],
            "etcd": [etcd_server.target("etcd")],
            "nats": [nats_server.target("events")],
            "lsm": [badger_host.target("edge-cache")],
        }
    )
    # A build-log stream with a consumer group, so the per-group series exist.
    stream = "build:real-scrape-names:logs"
    with redis_server.client() as c:
        c.xadd(stream, {"line": "x"})
        c.xgroup_create(stream, "archiver", id="0")
    try:
        targets = (
            ("postgres", "pg"),
            ("postgres", "pg-standby"),
            ("redis", "cache"),
            ("s3", "store"),
            ("mysql", "mysql"),
            ("memcached", "mc"),
            ("etcd", "etcd"),
            ("nats", "events"),
            ("lsm", "edge-cache"),
        )
        for adapter, name in targets:
            await exp.wait_for(
                lambda a=adapter, n=name: exp.value("sparki_up", adapter=a, target=n),
                timeout=60,
            )
        # Some statements between two polls, so the latency histogram has observations.
        for _ in range(20):
            await asyncio.to_thread(pg.sql, "SELECT count(*) FROM pg_class")
        await exp.polls("postgres", "pg", 2)
        await exp.polls("redis", "cache", 2)

        # The S3 multipart and lifecycle collectors read in the background: their first
        # reading lands a few polls in, later on a loaded machine.
        async def present(name: str) -> bool:
            return await exp.value(name, target="store") is not None

        for name in (
            "sparki_s3_lifecycle_rule_present",
            "sparki_s3_multipart_oldest_upload_age_seconds",
        ):
            await exp.wait_for(lambda n=name: present(n), timeout=120)
        return promql.exposition_names(await exp.scrape())
    finally:
        with redis_server.client() as c:
            c.delete(stream)


async def test_rule_metric_names_are_in_a_real_scrape(
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
    exprs = [r["expr"] for r in recording_rules()] + [r["expr"] for r in alert_rules()]
    used = set().union(*(promql.metric_names(e) for e in exprs))
    assert used, "no names found: the extractor is broken"
    assert not used - names - recorded - NOT_IN_A_PLAIN_SCRAPE - WEB_CONFIG_ONLY, (
        f"rules read names nobody produces: {sorted(used - names - recorded)}"
    )
    # Recording rules that read other recording rules would depend on group order.
    for rule in recording_rules():
        assert not promql.metric_names(rule["expr"]) & recorded, rule["record"]


def test_metric_name_extraction() -> None:
    expr = (
        "histogram_quantile(0.95, sum without (cmd) (rate(sparki_redis_command_duration_seconds"
        '_bucket{target=~"$target",le!="0.5"}[$__rate_interval]))) > 0.005 and ignoring (class) '
        "target:x:rate5m >= 1e3 or on (target) group_left () (time() - b) / (c > 0)"
    )
    assert promql.metric_names(expr) == {
        "sparki_redis_command_duration_seconds_bucket",
        "target:x:rate5m",
        "b",
        "c",
    }
    text = '# TYPE a_total counter\na_total{x="1"} 2\n# TYPE h histogram\n# TYPE g gauge\n'
    assert promql.exposition_names(text) == {"a_total", "h_bucket", "h_sum", "h_count", "g"}


def test_humanize_matches_prometheus_templates() -> None:
    """The expected annotations in tests/promtool are rendered with these."""
    assert promtests.humanize_duration(0.051) == "51ms"
    assert promtests.humanize_duration(306) == "5m 6s"
    assert promtests.humanize_duration(30.6) == "30.6s"
    assert promtests.humanize_percentage(0.969) == "96.9%"
    assert promtests.humanize(102.0) == "102"
    assert promtests.humanize(1234.5) == "1.234k"
    assert promtests.go_value(0.0) == "0"
