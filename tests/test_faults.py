"""Fault suite: every adapter side by side in one exporter, one fault at a time.

For each fault: /metrics keeps answering fast, only the affected target reads
``sparki_up 0`` with its reason (faults that only take a capability away keep it up),
the other targets keep updating, and the target recovers without a restart.

Single-adapter details are covered where the adapter is tested and are not repeated
here: tests/test_postgres.py (stopped cluster, hung server, frozen connection, locks,
pg_stat_statements resets and evictions in detail, a role without pg_read_all_stats,
missing extension), tests/test_s3.py (stopped server, hung endpoint, missing bucket,
credentials) and the Redis adapter's own tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from fixtures_core import HungServer, RunningExporter
from fixtures_pg import PgCluster

pytestmark = pytest.mark.slow

# The 1 s schedule the other files use: faults are seen within a poll or two, and the
# waits are generous for a loaded 2-core host.
TIMEOUT = 0.9
SCHEDULE = {"poll_interval": "1s", "poll_timeout": f"{TIMEOUT}s"}
WAIT = 40.0
# /metrics never waits on a target: even on a busy host a scrape is far below this.
SCRAPE_DEADLINE = 2.0

Target = tuple[str, str]  # (adapter, name)


def healthy_targets(pg: PgCluster, redis_server: Any, s3_server: Any) -> dict[str, list[Any]]:
    return {
        "postgres": [pg.target("pg-ok")],
        "redis": [redis_server.target("redis-ok")],
        "s3": [s3_server.target("s3-ok")],
    }


HEALTHY: list[Target] = [("postgres", "pg-ok"), ("redis", "redis-ok"), ("s3", "s3-ok")]


def merged(*parts: dict[str, list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = dict(SCHEDULE)
    for part in parts:
        for section, targets in part.items():
            out.setdefault(section, [])
            out[section] = out[section] + targets
    return out


async def scrapes_stay_fast(exp: RunningExporter, count: int = 10) -> None:
    for _ in range(count):
        start = time.monotonic()
        status, _, _ = await exp.get("/metrics")
        elapsed = time.monotonic() - start
        assert status == 200
        assert elapsed < SCRAPE_DEADLINE, f"scrape took {elapsed:.2f}s during a fault"


async def down_with(exp: RunningExporter, target: Target, reasons: Iterable[str]) -> str:
    """Wait until the target is down with one of ``reasons``; return the reason."""
    adapter, name = target
    wanted = set(reasons)

    async def check() -> str | None:
        if await exp.value("sparki_up", adapter=adapter, target=name) != 0:
            return None
        for sample in await exp.samples(
            "sparki_last_poll_error_reason", adapter=adapter, target=name
        ):
            if sample.value == 1 and sample.labels["reason"] in wanted:
                return str(sample.labels["reason"])
        return None

    return str(await exp.wait_for(check, WAIT))


async def up(exp: RunningExporter, target: Target) -> None:
    adapter, name = target

    async def check() -> bool:
        if await exp.value("sparki_up", adapter=adapter, target=name) != 1:
            return False
        return not await exp.samples("sparki_last_poll_error_reason", adapter=adapter, target=name)

    await exp.wait_for(check, WAIT)


async def others_keep_updating(exp: RunningExporter, targets: Iterable[Target]) -> None:
    """Each target completes new successful polls meanwhile, and reads up."""
    before = {t: exp.runner(*t).state.last_success or 0.0 for t in targets}
    for (adapter, name), then in before.items():
        state = exp.runner(adapter, name).state

        async def moved_on(
            state: Any = state, then: float = then, a: str = adapter, n: str = name
        ) -> bool:
            if (state.last_success or 0.0) <= then:
                return False
            return await exp.value("sparki_up", adapter=a, target=n) == 1

        await exp.wait_for(moved_on, WAIT)


async def isolated_fault(
    exp: RunningExporter,
    faulty: Iterable[tuple[Target, Iterable[str]]],
    healthy: Iterable[Target] = HEALTHY,
) -> dict[Target, str]:
    """The common assertions while a fault is in place."""
    reasons = {}
    for target, allowed in faulty:
        reasons[target] = await down_with(exp, target, allowed)
    await scrapes_stay_fast(exp)
    await others_keep_updating(exp, healthy)
    for target in reasons:  # still down, with the same reason, after others moved on
        assert await exp.value("sparki_up", adapter=target[0], target=target[1]) == 0
    return reasons


async def start_all(start_exporter: Callable[..., Awaitable[RunningExporter]], *parts: Any) -> Any:
    exp = await start_exporter(merged(*parts))
    for target in HEALTHY:
        await up(exp, target)
    return exp


# --- servers that go away and come back ------------------------------------------------------


async def test_postgres_restart(
    pg_cluster: PgCluster, pg_primary, redis_server, s3_server, start_exporter
) -> None:
    exp = await start_all(
        start_exporter,
        healthy_targets(pg_primary, redis_server, s3_server),
        {"postgres": [pg_cluster.target("pg-restart")]},
    )
    target = ("postgres", "pg-restart")
    await up(exp, target)
    await asyncio.to_thread(pg_cluster.stop)
    await isolated_fault(exp, [(target, ["connect"])])
    await asyncio.to_thread(pg_cluster.start)
    await up(exp, target)
    assert await exp.value("sparki_postgres_max_connections", target="pg-restart") == 37
    await others_keep_updating(exp, HEALTHY)


async def test_redis_restart(
    redis_private, pg_primary, redis_server, s3_server, start_exporter
) -> None:
    exp = await start_all(
        start_exporter,
        healthy_targets(pg_primary, redis_server, s3_server),
        {"redis": [redis_private.target("redis-restart")]},
    )
    target = ("redis", "redis-restart")
    await up(exp, target)
    await asyncio.to_thread(redis_private.stop)
    await isolated_fault(exp, [(target, ["connect"])])
    await asyncio.to_thread(redis_private.start)
    await up(exp, target)
    await others_keep_updating(exp, HEALTHY)


async def test_s3_server_stopped(
    s3_private_server, pg_primary, redis_server, s3_server, start_exporter
) -> None:
    exp = await start_all(
        start_exporter,
        healthy_targets(pg_primary, redis_server, s3_server),
        {"s3": [s3_private_server.target("s3-stopped")]},
    )
    target = ("s3", "s3-stopped")
    await up(exp, target)
    await asyncio.to_thread(s3_private_server.stop)
    await isolated_fault(exp, [(target, ["connect"])])
    await asyncio.to_thread(s3_private_server.start)
    await up(exp, target)
    await others_keep_updating(exp, HEALTHY)


# --- addresses that never answer, names that do not resolve -----------------------------------


def unreachable_targets(host: str, port: int) -> dict[str, list[Any]]:
    return {
        "postgres": [{"name": "pg-bad", "dsn": f"postgresql://x@{host}:{port}/postgres"}],
        "redis": [{"name": "redis-bad", "url": f"redis://{host}:{port}"}],
        "s3": [
            {
                "name": "s3-bad",
                "bucket": "sparki-test",
                "endpoint_url": f"http://{host}:{port}",
                "region": "us-east-1",
                "access_key_id": "AKIASPARKITEST000001",
                "secret_access_key": "sparki-test-secret-0f3c9a7b",
            }
        ],
    }


BAD: list[Target] = [("postgres", "pg-bad"), ("redis", "redis-bad"), ("s3", "s3-bad")]


async def test_hung_server_for_every_adapter(
    hung_server: HungServer, pg_primary, redis_server, s3_server, start_exporter
) -> None:
    exp = await start_all(
        start_exporter,
        healthy_targets(pg_primary, redis_server, s3_server),
        unreachable_targets("127.0.0.1", hung_server.port),
    )
    await isolated_fault(exp, [(t, ["timeout"]) for t in BAD])
    assert len(hung_server.accepted) >= 3  # every adapter did connect, and got silence
    for adapter, name in BAD:  # each poll ended at its deadline; none piled up
        state = exp.runner(adapter, name).state
        assert state.last_duration is not None and state.last_duration < TIMEOUT + 2.5


async def test_host_name_that_does_not_resolve(
    pg_primary, redis_server, s3_server, start_exporter
) -> None:
    exp = await start_all(
        start_exporter,
        healthy_targets(pg_primary, redis_server, s3_server),
        unreachable_targets("nonexistent.invalid", 5432),
    )
    await isolated_fault(exp, [(t, ["connect"]) for t in BAD])
    page = (await exp.get("/"))[2].decode()
    assert "nonexistent.invalid" not in (await exp.scrape())  # no address in any label
    assert "down" in page


# --- faults that take data away, not the target ------------------------------------------------


async def test_pg_stat_statements_reset(
    pg_cluster: PgCluster, pg_primary, redis_server, s3_server, start_exporter
) -> None:
    """A full reset side by side with the other targets, against exact expected counts.

    Details (partial resets, evictions) are in test_postgres.py and test_pg_latency.py.
    Only the exporter's first poll is a baseline: a statement first seen later, and
    every statement after a reset, did all of its calls since the previous poll, so
    every call counts exactly once, and the reset itself makes nothing up.
    """
    exp = await start_all(
        start_exporter,
        healthy_targets(pg_primary, redis_server, s3_server),
        {"postgres": [pg_cluster.target("pg-reset")]},
    )
    target = ("postgres", "pg-reset")
    await up(exp, target)

    def work(times: int) -> None:
        with pg_cluster.connect("app") as conn:
            for _ in range(times):
                conn.execute(b"SELECT pg_sleep(0.01)")

    async def histogram() -> dict[str, float]:
        name = "sparki_postgres_statement_duration_seconds"
        out = {
            s.labels["le"]: s.value
            for s in await exp.samples(f"{name}_bucket", target="pg-reset", datname="app")
        }
        out["sum"] = await exp.value(f"{name}_sum", target="pg-reset", datname="app") or 0.0
        return out

    async def counted(calls: int) -> None:
        """``calls`` made, then two polls: the count must read exactly so much."""
        await asyncio.to_thread(work, calls)
        await exp.polls(*target, 2)

    await counted(1)  # first sight after the exporter's first poll: counted
    await counted(10)
    before = await histogram()
    assert before["+Inf"] == 11, before
    await asyncio.to_thread(pg_cluster.sql, "SELECT pg_stat_statements_reset()")
    await exp.polls(*target, 2)
    assert await histogram() == before  # the reset alone makes nothing up
    await counted(1)  # first sight after the reset: its one call counts
    once = await histogram()
    assert once["+Inf"] == 12, once
    await counted(12)
    after = await histogram()
    assert after["+Inf"] == 24, after
    # pg_sleep(0.01) never takes less than 10 ms: nothing lands at or below 5 ms.
    assert after["0.005"] == before["0.005"] == 0, after
    assert after["sum"] >= before["sum"] + 13 * 0.01, (before, after)
    await scrapes_stay_fast(exp)
    await others_keep_updating(exp, HEALTHY)


async def test_postgres_role_without_pg_read_all_stats(
    pg_primary: PgCluster, redis_server, s3_server, start_exporter
) -> None:
    """Less visibility, not a failure: it stays up (see test_postgres.py for the details)."""
    if not pg_primary.sql("SELECT 1 FROM pg_roles WHERE rolname = 'fault_plain'"):
        pg_primary.sql("CREATE ROLE fault_plain LOGIN")
    exp = await start_all(
        start_exporter,
        healthy_targets(pg_primary, redis_server, s3_server),
        {"postgres": [{"name": "pg-plain", "dsn": pg_primary.dsn(user="fault_plain")}]},
    )
    await up(exp, ("postgres", "pg-plain"))
    await scrapes_stay_fast(exp)
    await others_keep_updating(exp, [*HEALTHY, ("postgres", "pg-plain")])
    assert await exp.value("sparki_postgres_max_connections", target="pg-plain") == 37


async def test_redis_acl_user_without_info(
    redis_factory, pg_primary, redis_server, s3_server, start_exporter
) -> None:
    password = "noinfo-Pa55"
    server = redis_factory(
        users=[f"noinfo on >{password} resetkeys resetchannels -@all +ping +client|setname"]
    )
    exp = await start_all(
        start_exporter,
        healthy_targets(pg_primary, redis_server, s3_server),
        {"redis": [server.target("redis-noinfo", username="noinfo", password=password)]},
    )
    target = ("redis", "redis-noinfo")
    await isolated_fault(exp, [(target, ["permission"])])
    error = exp.runner(*target).state.last_error or ""
    assert "info" in error.lower() and password not in error
    # Granting INFO is enough: the next poll succeeds, nothing restarts.
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "noinfo", "+info")
    await up(exp, target)
    await others_keep_updating(exp, HEALTHY)
