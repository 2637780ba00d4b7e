"""Every family of a full scrape parses in both exposition formats.

A strict parser rejects a whole scrape for one bad line, so one family with an
unescaped HELP text would blank every series of the exporter. The exporter here runs
as its own process against a real server of every adapter (PostgreSQL with a standby,
S3 with CloudWatch), with a down target of each kind, so the scrape holds every family
a deployment shows; it is read by prometheus_client's OpenMetrics and text parsers and by
Prometheus' own parser through ``promtool check metrics``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_core import free_port
from fixtures_pg import PgCluster
from fixtures_s3 import MotoServer
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse
from test_adapters import ROWS

from devstack.exporter import exporter_argv
from exporter.metrics import GaugeMetricFamily, merge_exposition, render_families

OM = "application/openmetrics-text; version=1.0.0"
# HELP lines per grammar: OpenMetrics escapes backslash, newline and double quote; the
# text format escapes only backslash and newline (Prometheus refuses any other escape).
OM_HELP = re.compile(r'# HELP [a-zA-Z_:][a-zA-Z0-9_:]* (?:[^"\\\n]|\\[\\n"])*')
TEXT_HELP = re.compile(r"# HELP [a-zA-Z_:][a-zA-Z0-9_:]* (?:[^\\\n]|\\[\\n])*")
_EMPTY = GaugeMetricFamily("absent", "")  # a family not in the scrape: no samples


def _get(url: str, accept: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read().decode()


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def full_exporter(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    pg_standby: PgCluster,
    s3_server: MotoServer,
) -> Iterator[str]:
    """An exporter process polling a live and a dead target of every adapter (the shared
    per-adapter table of test_adapters.py), plus what only some deployments show: a
    PostgreSQL standby and S3's CloudWatch families."""
    config: dict[str, Any] = {"poll_interval": "1s", "poll_timeout": "900ms"}
    for row in ROWS:
        live = {**row.healthy(request.getfixturevalue(row.server)), "name": row.adapter}
        dead = {**row.hung(free_port()), "name": f"{row.adapter}-gone"}
        config[row.adapter] = [live, dead]
    config["postgres"].append({"name": "pg-standby", "dsn": pg_standby.dsn(user="sparki_monitor")})
    config["s3"][0] = s3_server.target(
        "s3", cloudwatch={"enabled": True, "endpoint_url": s3_server.endpoint_url}
    )
    cfg = tmp_path / "sparki.yml"
    cfg.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "exporter.log").open("wb")
    proc = subprocess.Popen(exporter_argv(cfg, port), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        up = [f'sparki_up{{adapter="{r.adapter}",target="{r.adapter}"}} 1' for r in ROWS]
        try:
            _wait(
                lambda: all(u in _get(url + "/metrics")[1] for u in up), 60, "every live target up"
            )
        except AssertionError:
            raise AssertionError((tmp_path / "exporter.log").read_text()[-3000:]) from None
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.slow
def test_full_scrape_parses_in_both_formats(full_exporter: str, tmp_path: Path) -> None:
    _, text = _get(full_exporter + "/metrics")
    status, om = _get(full_exporter + "/metrics", OM)
    assert status == 200 and om.endswith("# EOF\n")

    text_families = {f.name: f for f in text_parse(text)}
    om_families = {f.name: f for f in om_parse(om)}  # raises on the first bad line
    # The same families, with the same samples, whatever the format.
    assert set(text_families) == set(om_families)
    # Every adapter's families are in it: at least those a healthy poll always fills.
    for row in ROWS:
        missing = [n for n in row.must_have_samples if not om_families.get(n, _EMPTY).samples]
        assert not missing, (row.adapter, missing)
    for name, fam in om_families.items():
        assert fam.documentation == text_families[name].documentation, name
        assert fam.type == text_families[name].type, name
    # prometheus_client's OpenMetrics parser tolerates a bare `"` in HELP; the grammar
    # (escaped-string) does not, and stricter parsers follow the grammar.
    for line in om.splitlines():
        if line.startswith("# HELP "):
            assert OM_HELP.fullmatch(line), f"not OpenMetrics: {line}"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert TEXT_HELP.fullmatch(line), f"not the text format: {line}"
    # Families whose HELP needs escaping in one format and not the other are in the
    # scrape, from each adapter that has some: without them this test would prove
    # nothing about escaping.
    quoted = {name.split("_")[1] for name, f in om_families.items() if '"' in f.documentation}
    assert {"postgres", "mysql", "redis"} <= quoted, quoted

    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/setup"
    # promtool reads the text format with Prometheus' own parser; lint findings (exit 3)
    # are style opinions, a parse error is exit 1.
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert checked.returncode in (0, 3), checked.stderr.decode()
    assert b"error while linting" not in checked.stderr, checked.stderr.decode()


def test_help_escaping_differs_by_format() -> None:
    """OpenMetrics escapes ``"`` in HELP, the text format must not (it would show ``\\"``)."""
    fam = GaugeMetricFamily("x_ratio", 'a "quoted" word, a back\\slash\nand a newline')
    fam.add_metric([], 1.0)
    rendered = render_families([fam])
    text = merge_exposition([rendered], openmetrics=False).decode()
    om = merge_exposition([rendered], openmetrics=True).decode()
    assert '# HELP x_ratio a "quoted" word, a back\\\\slash\\nand a newline\n' in text
    assert '# HELP x_ratio a \\"quoted\\" word, a back\\\\slash\\nand a newline\n' in om
    for parsed in (next(iter(text_parse(text))), next(iter(om_parse(om)))):
        assert parsed.documentation == fam.documentation
