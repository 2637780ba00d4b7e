"""Replication health on real clusters (primary + pg_basebackup standby).

Broken replication must be visible: a standby whose WAL receiver is down reports a lag
that grows (not 0) and ``sparki_postgres_wal_receiver_up 0``; a primary reports its
replication slots (active, retained WAL, wal_status) and how many standbys stream from
it, against the configured ``expected_standbys``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fixtures_core import free_port
from fixtures_pg import PgCluster, make_primary

pytestmark = pytest.mark.slow


@pytest.fixture
def pair() -> Iterator[tuple[PgCluster, PgCluster]]:
    """A private primary and a streaming standby that the test may break."""
    primary = make_primary()
    standby = PgCluster().init_standby(primary).start()
    try:
        deadline = time.monotonic() + 60
        while not primary.sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")[
            0
        ][0]:
            assert time.monotonic() < deadline, "the standby never streamed"
            time.sleep(0.2)
        primary.ensure_monitor_role()
        yield primary, standby
    finally:
        standby.destroy()
        primary.destroy()


def cut_receiver(standby: PgCluster, primary_port: int) -> None:
    """Point the standby's WAL receiver at a closed port: it stops and cannot restart."""
    standby.sql(
        f"ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={primary_port} "
        "user=postgres application_name=standby1 connect_timeout=2'"
    )
    standby.sql("SELECT pg_reload_conf()")


async def test_a_standby_without_its_wal_receiver_shows_it_and_a_growing_lag(
    start_exporter: Callable[..., Any], pair: tuple[PgCluster, PgCluster]
) -> None:
    primary, standby = pair
    exp = await start_exporter(
        {
            "poll_interval": "1s",
            "poll_timeout": "900ms",
            "postgres": [
                {"name": "standby", "dsn": standby.dsn(user="sparki_monitor")},
                {
                    "name": "primary",
                    "dsn": primary.dsn(user="sparki_monitor"),
                    "expected_standbys": 1,
                },
            ],
        }
    )
    up = "sparki_postgres_wal_receiver_up"
    await exp.wait_for(lambda: exp.value(up, target="standby"), timeout=30)
    assert await exp.value(up, target="primary") is None  # a primary has no receiver
    await exp.wait_for(
        lambda: _is(exp, "sparki_postgres_replication_standbys", 1.0, target="primary"),
        timeout=30,
    )
    assert await exp.value("sparki_postgres_replication_expected_standbys", target="primary") == 1

    cut_receiver(standby, free_port())
    primary.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
    await exp.wait_for(lambda: _is(exp, up, 0.0, target="standby"), timeout=30)
    # The primary keeps writing; the standby's lag grows poll after poll instead of 0.
    lag = "sparki_postgres_replication_lag_seconds"
    first = await exp.value(lag, target="standby", replica="self")
    assert first is not None
    await asyncio.to_thread(primary.sql, "CREATE TABLE t AS SELECT 1 AS x", "app")
    await exp.wait_for(
        lambda: _above(exp, lag, first + 2.0, target="standby", replica="self"), timeout=30
    )
    # The primary sees its standby gone: 0 streaming of 1 expected.
    await exp.wait_for(
        lambda: _is(exp, "sparki_postgres_replication_standbys", 0.0, target="primary"),
        timeout=30,
    )
    # Back to the real primary: streaming again, and the lag is the replay lag again.
    cut_receiver(standby, primary.port)
    await exp.wait_for(lambda: _is(exp, up, 1.0, target="standby"), timeout=60)
    await exp.wait_for(lambda: _below(exp, lag, 1.0, target="standby", replica="self"), timeout=30)


async def test_an_inactive_slot_retaining_wal_is_reported(
    start_exporter: Callable[..., Any], pair: tuple[PgCluster, PgCluster]
) -> None:
    primary, _ = pair
    primary.sql("SELECT pg_create_physical_replication_slot('gone_standby', true)")
    exp = await start_exporter(
        {
            "poll_interval": "1s",
            "poll_timeout": "900ms",
            "postgres": [{"name": "primary", "dsn": primary.dsn(user="sparki_monitor")}],
        }
    )
    slot = {"target": "primary", "slot": "gone_standby"}
    await exp.wait_for(
        lambda: exp.samples("sparki_postgres_replication_slot_active", **slot), timeout=30
    )
    assert await exp.value("sparki_postgres_replication_slot_active", **slot) == 0
    retained = "sparki_postgres_replication_slot_retained_wal_bytes"
    before = await exp.value(retained, **slot)
    assert before is not None
    # WAL written after the slot was made stays on disk for it: the figure grows.
    await asyncio.to_thread(
        primary.sql,
        "CREATE TABLE big AS SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
        "app",
    )
    await exp.wait_for(lambda: _above(exp, retained, before + 1_000_000, **slot), timeout=30)
    status = await exp.samples("sparki_postgres_replication_slot_wal_status", **slot)
    assert {s.labels["wal_status"]: s.value for s in status} == {
        "reserved": 1.0,
        "extended": 0.0,
        "unreserved": 0.0,
        "lost": 0.0,
    }
    # expected_standbys unset: no expectation series.
    assert (
        await exp.value("sparki_postgres_replication_expected_standbys", target="primary") is None
    )


async def _is(exp: Any, name: str, want: float, **labels: str) -> bool:
    return bool(await exp.value(name, **labels) == want)


async def _above(exp: Any, name: str, floor: float, **labels: str) -> bool:
    value = await exp.value(name, **labels)
    return value is not None and value > floor


async def _below(exp: Any, name: str, ceiling: float, **labels: str) -> bool:
    value = await exp.value(name, **labels)
    return value is not None and value < ceiling
