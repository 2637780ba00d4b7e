"""Every family of a full scrape parses in both exposition formats.

A strict parser rejects a whole scrape for one bad line, so one family with an
unescaped HELP text would blank every series of the exporter. The exporter here runs
as its own process against real PostgreSQL (with a standby), Redis and S3 (with
CloudWatch), with a down target of each kind, so the scrape holds every family a
deployment shows; it is read by prometheus_client's OpenMetrics and text parsers and by
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
from fixtures_redis import RedisServer
from fixtures_s3 import MotoServer
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from devstack.exporter import exporter_argv
from exporter.metrics import GaugeMetricFamily, merge_exposition, render_families

OM = "application/openmetrics-text; version=1.0.0"
# HELP lines per grammar: OpenMetrics escapes backslash, newline and double quote; the
# text format escapes only backslash and newline (Prometheus refuses any other escape).
OM_HELP = re.compile(r'# HELP [a-zA-Z_:][a-zA-Z0-9_:]* (?:[^"\\\n]|\\[\\n"])*')
TEXT_HELP = re.compile(r"# HELP [a-zA-Z_:][a-zA-Z0-9_:]* (?:[^\\\n]|\\[\\n])*")


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
    pg_primary: PgCluster,
    pg_standby: PgCluster,
    redis_server: RedisServer,
    s3_server: MotoServer,
) -> Iterator[str]:
    """An exporter process polling one target of every kind (and a dead one of each)."""
    config = {
        "poll_interval": "1s",
        "poll_timeout": "900ms",
        "postgres": [
            pg_primary.target("pg"),
            {"name": "pg-standby", "dsn": pg_standby.dsn(user="sparki_monitor")},
            {"name": "pg-gone", "dsn": f"postgresql://x@127.0.0.1:{free_port()}/x"},
        ],
        "redis": [
            redis_server.target("redis"),
            {"name": "redis-gone", "url": f"redis://127.0.0.1:{free_port()}/0"},
        ],
        "s3": [
            s3_server.target(
                "s3",
                cloudwatch={"enabled": True, "endpoint_url": s3_server.endpoint_url},
            ),
            s3_server.target("s3-gone", endpoint_url=f"http://127.0.0.1:{free_port()}"),
        ],
    }
    cfg = tmp_path / "sparki.yml"
    cfg.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "exporter.log").open("wb")
    proc = subprocess.Popen(exporter_argv(cfg, port), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        up = (
            'sparki_up{adapter="postgres",target="pg"} 1',
            'sparki_up{adapter="redis",target="redis"} 1',
            'sparki_up{adapter="s3",target="s3"} 1',
        )
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
    assert len(om_families) > 50, sorted(om_families)
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
    # scrape: without them this test would prove nothing about escaping.
    assert any('"' in f.documentation for f in om_families.values())

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
