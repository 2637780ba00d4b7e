"""The PostgreSQL poll's batch: the collectors that only run fixed queries share one
pipelined round trip, and a failure inside it still stays with its own collector.

In a pipeline, a failed statement aborts every statement queued behind it; these tests
check that the collectors behind it are still exported in the same poll, that the one
that failed runs alone (so it cannot abort the batch every poll) until it succeeds, and
that a connection lost inside the batch fails the poll as it did before.
"""

from __future__ import annotations

from typing import Any

import pytest
from fixtures_pg import PgCluster

from exporter.adapters.postgres import target as target_mod
from exporter.adapters.postgres.batch import QueryCollector
from exporter.adapters.postgres.config import PostgresConfig
from exporter.adapters.postgres.target import PostgresTarget
from exporter.config import GlobalConfig


def new_target(cluster: PgCluster, name: str = "t", **extra: object) -> PostgresTarget:
    config = PostgresConfig.model_validate(cluster.target(name, **extra))
    return PostgresTarget(config, GlobalConfig())


def batchable(target: PostgresTarget) -> list[str]:
    return [n for n, c in target.collectors.items() if isinstance(c, QueryCollector)]


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The collectors of every batch the target sends, in order."""
    seen: list[list[str]] = []
    real = target_mod.run_batch

    async def spy(conn: Any, plans: Any) -> Any:
        seen.append([name for name, _ in plans])
        return await real(conn, plans)

    monkeypatch.setattr(target_mod, "run_batch", spy)
    return seen


async def test_every_fixed_query_collector_shares_one_batch(
    pg_primary: PgCluster, batches: list[list[str]]
) -> None:
    target = new_target(pg_primary)
    try:
        for _ in range(2):
            snap = await target.poll()
            assert all(r.ok for r in snap.runs), [r for r in snap.runs if not r.ok]
    finally:
        await target.close()
    names = batchable(target)
    assert len(names) >= 10  # every default collector but statements
    assert batches == [names, names]
    # The parts and runs keep the catalog's order, whatever ran first.
    assert [r.name for r in snap.runs] == list(target.collectors)
    assert [n for n, _ in snap.parts] == list(target.collectors)


async def test_a_denied_collector_fails_alone_and_those_behind_it_still_report(
    pg_cluster: PgCluster, batches: list[list[str]]
) -> None:
    pg_cluster.ensure_monitor_role()
    # "database" is second in the batch: everything queued behind it gets aborted.
    pg_cluster.sql("REVOKE SELECT ON pg_stat_database FROM PUBLIC")
    target = new_target(pg_cluster)
    names = batchable(target)
    assert names.index("database") < len(names) - 1
    try:
        for poll in range(2):
            snap = await target.poll()
            runs = {r.name: r for r in snap.runs}
            assert not runs["database"].ok
            assert "InsufficientPrivilege (42501)" in runs["database"].error
            assert "pg_stat_database" in runs["database"].error
            # Behind it in the pipeline, yet exported in this very poll.
            assert {n for n, r in runs.items() if not r.ok} == {"database"}
            assert {n for n, _ in snap.parts} == set(target.collectors) - {"database"}
            assert target.alone == {"database"}
            if poll == 1:
                assert batches[-1] == [n for n in names if n != "database"]

        pg_cluster.sql("GRANT SELECT ON pg_stat_database TO PUBLIC")
        snap = await target.poll()  # alone, and it succeeds: back into the batch
        assert all(r.ok for r in snap.runs)
        assert target.alone == set()
        snap = await target.poll()
        assert all(r.ok for r in snap.runs)
        assert batches[-1] == names
        assert snap.part("database")
    finally:
        await target.close()


async def test_an_odd_reply_fails_only_the_collector_that_reads_it(
    pg_primary: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = new_target(pg_primary)
    settings = target.collectors["settings"]
    assert isinstance(settings, QueryCollector)

    def broken(results: Any, version: int, standby: bool) -> Any:
        raise ValueError("a reply this collector cannot read")

    monkeypatch.setattr(settings, "parse", broken)
    try:
        snap = await target.poll()
    finally:
        await target.close()
    runs = {r.name: r for r in snap.runs}
    assert {n for n, r in runs.items() if not r.ok} == {"settings"}
    assert "ValueError: a reply this collector cannot read" in runs["settings"].error
    # Its queries ran fine: it stays in the batch.
    assert target.alone == set()


async def test_a_connection_lost_inside_the_batch_fails_the_poll(
    pg_primary: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = new_target(pg_primary)
    locks = target.collectors["locks"]
    assert isinstance(locks, QueryCollector)
    # A role may terminate its own backend: the server closes the connection mid-batch.
    monkeypatch.setattr(
        locks,
        "queries",
        lambda version, standby: ("SELECT pg_terminate_backend(pg_backend_pid())",),
    )
    try:
        with pytest.raises(Exception) as caught:
            await target.poll()
        assert target.conn is None or target.conn.closed or target.conn.broken
        assert "terminat" in str(caught.value).lower() or "connection" in str(caught.value).lower()
        monkeypatch.undo()
        await target.reset()
        snap = await target.poll()  # a new connection, and all is well again
        assert all(r.ok for r in snap.runs)
    finally:
        await target.close()


async def test_statements_read_in_one_round_trip_and_fall_back_when_it_fails(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch, captured_logs: Any
) -> None:
    """After the first complete read, pg_stat_statements' status, info and rows come in
    one pipeline. When that fails (the extension dropped under a running exporter),
    the step-by-step read runs in the same poll and says what to fix, once."""
    from exporter.adapters.postgres import statements as stmt_mod

    pipelined: list[list[str]] = []
    real = stmt_mod.run_batch

    async def spy(conn: Any, plans: Any, binary: Any = ()) -> Any:
        pipelined.append([name for name, _ in plans])
        return await real(conn, plans, binary)

    monkeypatch.setattr(stmt_mod, "run_batch", spy)
    target = new_target(pg_cluster)
    try:
        await target.poll()
        assert pipelined == []  # the first read is step by step: it learns the status
        pg_cluster.sql("SELECT 42 AS answer", "app")
        snap = await target.poll()
        assert pipelined == [["status", "read"]]
        part = snap.part("statements")
        assert part.available and part.tracked > 0

        pg_cluster.sql("DROP EXTENSION pg_stat_statements", "postgres")
        for _ in range(3):
            snap = await target.poll()
            runs = {r.name: r for r in snap.runs}
            assert all(r.ok for r in runs.values())  # the rest is untouched
            assert not snap.part("statements").available
        # Tried once pipelined, then never while the problem lasts.
        assert len(pipelined) == 2
        assert captured_logs().count("CREATE EXTENSION pg_stat_statements") == 1

        pg_cluster.sql("CREATE EXTENSION pg_stat_statements", "postgres")
        snap = await target.poll()
        assert snap.part("statements"), [r for r in snap.runs if not r.ok]
        snap = await target.poll()
        assert snap.part("statements").available and len(pipelined) == 3
    finally:
        await target.close()


async def test_statement_info_is_rendered_once_until_the_top_n_changes(
    pg_primary: PgCluster,
) -> None:
    """statement_info (thousands of long labels at a high top_n) is rebuilt and
    re-rendered only when the top N or its texts change, and reads the same either way."""
    from exporter.adapters.postgres.target import families
    from exporter.metrics import render_families

    def info(snap: Any) -> Any:
        return next(f for f in families(snap) if f.name == "sparki_postgres_statement_info")

    def rendered(snap: Any) -> bytes:
        fam = next(
            r for r in render_families(families(snap)) if r.name == "sparki_postgres_statement_info"
        )
        return fam.body

    target = new_target(pg_primary, "infocache", query_text_refresh="10ms")
    try:
        await target.poll()
        pg_primary.sql("CREATE TABLE IF NOT EXISTS infocache_one (x int)", "app")
        pg_primary.sql("SELECT * FROM infocache_one", "app")
        first = await target.poll()
        again = await target.poll()
        assert info(first) is info(again)  # same texts: the same family, rendered once
        body = rendered(again)
        assert rendered(first) is body or rendered(first) == body
        assert b"infocache_one" in body
        # A statement of its own (aliases and constants do not make one: same queryid).
        pg_primary.sql("CREATE TABLE IF NOT EXISTS infocache_two (x int)", "app")
        pg_primary.sql("SELECT * FROM infocache_two", "app")
        changed = None
        for _ in range(5):
            changed = await target.poll()
            if b"infocache_two" in rendered(changed):
                break
        assert changed is not None and b"infocache_two" in rendered(changed)
        assert info(changed) is not info(first)
        # Rendered from scratch, it reads the same as the cached bytes.
        fresh = info(changed)
        from exporter.metrics import GaugeMetricFamily, render_family

        copy = GaugeMetricFamily(fresh.name, fresh.documentation)
        copy.samples = list(fresh.samples)
        assert render_family(copy).body == rendered(changed)
    finally:
        await target.close()
