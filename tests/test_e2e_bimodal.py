"""Paging end to end on the incident the mean hides: a bimodal statement.

90 % of calls at 5 ms and 10 % at 150 ms: the mean stays near 20 ms, under the 50 ms
warning line, while one call in ten takes 150 ms. The shipped rules, through real
Prometheus and Alertmanager, must page (critical, to the pager) on the p95. Timing is
shortened as in test_e2e.py: scrape and evaluation every 2 s, every ``for`` 10 s.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_core import free_port
from fixtures_pg import make_primary

from devstack.exporter import exporter_argv
from devstack.postgres import PgCluster
from devstack.promstack import Alertmanager, Prometheus, Webhook

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until truthy; a check that raises fails at once with its error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


def bimodal(cluster: PgCluster, stop: threading.Event) -> None:
    with cluster.connect("app") as conn:
        i = 0
        while not stop.is_set():
            conn.execute(b"SELECT pg_sleep(0.15)" if i % 10 == 9 else b"SELECT pg_sleep(0.005)")
            i += 1


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sparki-e2e-bimodal-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_bimodal_statement_with_a_low_mean_pages(base: Path) -> None:
    stops: list[Callable[[], Any]] = []
    stop_load = threading.Event()
    try:
        cluster = make_primary()
        stops.append(cluster.destroy)
        webhook = Webhook()
        stops.append(webhook.stop)
        am = Alertmanager(
            base, ROOT / "deploy/alertmanager/alertmanager.yml", webhook.url, group_wait="2s"
        )
        stops.append(am.stop)
        cfg = base / "sparki.yml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "poll_interval": "2s",
                    "poll_timeout": "1500ms",
                    "postgres": [cluster.target("pg-bimodal")],
                }
            )
        )
        port = free_port()
        log = (base / "exporter.log").open("wb")
        exporter = subprocess.Popen(exporter_argv(cfg, port), stdout=log, stderr=log)
        stops.append(lambda: (exporter.terminate(), exporter.wait(10)))

        def ready() -> bool:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as resp:
                    return resp.status == 200
            return False

        wait(ready, 30, "exporter ready")
        prom = Prometheus(
            base,
            [f"127.0.0.1:{port}"],
            sorted((ROOT / "rules").glob("*.rules.yml")),
            alertmanager=am.address,
            for_seconds=10,
        )
        stops.append(prom.stop)
        loader = threading.Thread(target=bimodal, args=(cluster, stop_load), daemon=True)
        loader.start()
        stops.insert(0, lambda: (stop_load.set(), loader.join(10)))

        found = wait(
            lambda: webhook.find(
                "SparkiPostgresStatementLatencyHigh", target="pg-bimodal", severity="critical"
            ),
            180,
            "a critical latency page for pg-bimodal",
        )
        receiver, alert = found[0]
        assert receiver == "pager"
        assert alert["labels"].get("datname") == "app"
        # ... while the mean, which is all the old placement showed, is far below 50 ms.
        mean = prom.query(
            'sum(rate(sparki_postgres_statement_duration_seconds_sum{datname="app"}[1m]))'
            ' / sum(rate(sparki_postgres_statement_duration_seconds_count{datname="app"}[1m]))'
        )
        assert mean, "no mean latency series"
        assert float(mean[0]["value"][1]) < 0.05, mean
    finally:
        stop_load.set()
        for stop in stops:
            with contextlib.suppress(Exception):
                stop()
