"""PostgreSQL collectors against real servers: switched per target and by flag, a
denied one degrading alone, and the pg_stat_database trouble counters moving when the
trouble really happens (a deadlock, a sort spilling to a temporary file)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_core import free_port
from fixtures_pg import PgCluster
from prometheus_client.parser import text_string_to_metric_families

from devstack.exporter import exporter_argv
from exporter.adapters.postgres import catalog

FAST = {"poll_interval": "1s", "poll_timeout": "0.8s"}
# Every family the database collector exports, and nothing else's.
DATABASE_FAMILIES = {
    "sparki_postgres_transactions",
    "sparki_postgres_blocks_hit",
    "sparki_postgres_blocks_read",
    "sparki_postgres_deadlocks",
    "sparki_postgres_temp_files",
    "sparki_postgres_temp_written_bytes",
    "sparki_postgres_conflicts",
}


def families_of(text: str, target: str) -> dict[str, list[Any]]:
    """Family name -> the target's samples, for families with at least one."""
    out: dict[str, list[Any]] = {}
    for fam in text_string_to_metric_families(text):
        mine = [s for s in fam.samples if s.labels.get("target") == target]
        if mine:
            out[fam.name] = mine
    return out


def collectors_reported(samples: dict[str, list[Any]]) -> dict[str, float]:
    return {
        s.labels["collector"]: s.value
        for s in samples.get("sparki_collector_success", [])
        if s.labels.get("adapter") == "postgres"
    }


async def test_a_collector_switched_off_removes_exactly_its_families(
    pg_primary: PgCluster, start_exporter
) -> None:
    exp = await start_exporter(
        {
            **FAST,
            "postgres": [
                pg_primary.target("all"),
                pg_primary.target("nodb", collectors={"database": False}),
            ],
        }
    )
    await exp.polls("postgres", "all", 2)
    await exp.polls("postgres", "nodb", 2)
    text = await exp.scrape()
    every, nodb = families_of(text, "all"), families_of(text, "nodb")
    assert set(every) - set(nodb) == DATABASE_FAMILIES
    assert set(nodb) - set(every) == set()
    names = [s.name for s in catalog.COLLECTORS]
    assert collectors_reported(every) == dict.fromkeys(names, 1.0)
    assert collectors_reported(nodb) == {n: 1.0 for n in names if n != "database"}
    assert await exp.value("sparki_up", adapter="postgres", target="nodb") == 1


async def test_a_collector_denied_by_privilege_degrades_alone(
    pg_cluster: PgCluster, start_exporter, captured_logs
) -> None:
    """REVOKE on pg_stat_database: that collector fails (once in the log, with the
    SQLSTATE), the target stays up and every other collector is still exported."""
    pg_cluster.ensure_monitor_role()
    pg_cluster.sql("REVOKE SELECT ON pg_stat_database FROM PUBLIC")
    exp = await start_exporter({**FAST, "postgres": [pg_cluster.target("denied")]})
    await exp.polls("postgres", "denied", 3)
    samples = families_of(await exp.scrape(), "denied")
    assert await exp.value("sparki_up", adapter="postgres", target="denied") == 1
    reported = collectors_reported(samples)
    assert reported.pop("database") == 0
    assert reported and set(reported.values()) == {1.0}
    assert not DATABASE_FAMILIES & set(samples)
    for name in (
        "sparki_postgres_connections",
        "sparki_postgres_replication_standbys",
        "sparki_postgres_statements_tracked",
        "sparki_postgres_probe_duration_seconds",
    ):
        assert name in samples, name
    logs = captured_logs()
    assert logs.count("collector failed") == 1, "one line, not one per poll"
    assert "InsufficientPrivilege (42501)" in logs and "pg_stat_database" in logs

    pg_cluster.sql("GRANT SELECT ON pg_stat_database TO PUBLIC")
    await exp.wait_value(
        "sparki_collector_success", 1, adapter="postgres", target="denied", collector="database"
    )
    assert await exp.value("sparki_postgres_deadlocks_total", target="denied", datname="app") == 0
    assert "collector recovered" in captured_logs()


def deadlock(cluster: PgCluster) -> None:
    """Two sessions locking two rows in opposite orders: PostgreSQL aborts one."""
    cluster.sql("CREATE TABLE IF NOT EXISTS dl (id int PRIMARY KEY, v int)", "app")
    cluster.sql("INSERT INTO dl VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING", "app")
    first_locked = threading.Barrier(2)
    errors: list[str] = []

    def side(a: int, b: int) -> None:
        with cluster.connect("app") as conn:
            conn.execute(b"SET deadlock_timeout = '100ms'")
            try:
                with conn.transaction():
                    conn.execute(b"UPDATE dl SET v = v + 1 WHERE id = %s", (a,))
                    first_locked.wait(10)
                    conn.execute(b"UPDATE dl SET v = v + 1 WHERE id = %s", (b,))
            except Exception as exc:  # the side PostgreSQL chose to abort
                errors.append(getattr(exc, "sqlstate", "") or type(exc).__name__)

    threads = [threading.Thread(target=side, args=ab) for ab in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == ["40P01"], errors


async def test_deadlocks_and_temporary_files_are_counted_per_database(
    pg_cluster: PgCluster, start_exporter
) -> None:
    exp = await start_exporter({**FAST, "postgres": [pg_cluster.target("trouble")]})
    await exp.polls("postgres", "trouble", 2)

    async def counter(name: str) -> float:
        value = await exp.value(name, target="trouble", datname="app")
        assert value is not None, name
        return value

    before = {
        name: await counter(name)
        for name in (
            "sparki_postgres_deadlocks_total",
            "sparki_postgres_temp_files_total",
            "sparki_postgres_temp_written_bytes_total",
            "sparki_postgres_conflicts_total",
        )
    }
    await asyncio.to_thread(deadlock, pg_cluster)
    # A sort of ~10 MB with work_mem at 64 kB spills to a temporary file.
    with pg_cluster.connect("app") as conn:
        conn.execute(b"SET work_mem = '64kB'")
        conn.execute(
            b"SELECT g FROM generate_series(1, 300000) g ORDER BY md5(g::text) LIMIT 1"
        ).fetchall()
    await exp.wait_for(
        lambda: _above(counter("sparki_postgres_deadlocks_total"), before, "deadlocks"),
        timeout=15,
    )
    await exp.polls("postgres", "trouble", 1)
    assert (
        await counter("sparki_postgres_deadlocks_total")
        == before["sparki_postgres_deadlocks_total"] + 1
    )
    assert await counter("sparki_postgres_temp_files_total") >= (
        before["sparki_postgres_temp_files_total"] + 1
    )
    written = await counter("sparki_postgres_temp_written_bytes_total")
    assert written - before["sparki_postgres_temp_written_bytes_total"] > 1_000_000
    # A primary has no recovery conflicts: the counter exists and stays 0.
    assert await counter("sparki_postgres_conflicts_total") == 0
    # Other databases did not move.
    assert (
        await exp.value("sparki_postgres_deadlocks_total", target="trouble", datname="postgres")
        == 0
    )


async def _above(value: Any, before: dict[str, float], what: str) -> bool:
    return bool((await value) > before[f"sparki_postgres_{what}_total"])


def _scrape_when_polled(port: int, deadline: float) -> str:
    """/metrics once the postgres target has been polled (its collectors reported)."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
            if 'sparki_collector_success{adapter="postgres"' in text:
                return text
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the exporter never polled its postgres target")


@pytest.mark.parametrize("flag", ["--no-collector.database", "--no-collector.postgres.database"])
def test_no_collector_flag_end_to_end(flag: str, pg_primary: PgCluster, tmp_path: Path) -> None:
    """The command-line switch reaches every target: the database collector does not run
    (no families, no collector series), the others do."""
    cfg = tmp_path / "sparki.yml"
    cfg.write_text(yaml.safe_dump({**FAST, "postgres": [pg_primary.target("flagged")]}))
    port = free_port()
    proc = subprocess.Popen(
        exporter_argv(cfg, port, flag), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        text = _scrape_when_polled(port, time.monotonic() + 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    samples = families_of(text, "flagged")
    assert not DATABASE_FAMILIES & set(samples)
    reported = collectors_reported(samples)
    assert "database" not in reported
    assert {"activity", "statements"} <= set(reported)
    assert "sparki_postgres_connections" in samples
