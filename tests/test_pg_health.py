"""The PostgreSQL health collectors against real servers (every installed major).

Each test causes the condition a collector reports (an open transaction, a lock wait,
dead tuples, a failing archive_command, a checkpoint) and reads it back through the
collector's ``collect`` and ``families``, as the exporter serves them.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from fixtures_pg import PgCluster, make_primary

PG_ALL_MAJORS = True

NAMES = (
    "database_size",
    "locks",
    "activity_age",
    "wraparound",
    "vacuum",
    "checkpoints",
    "archiver",
    "settings",
)
TARGET = "pg-test"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def module(name: str) -> Any:
    return importlib.import_module(f"exporter.adapters.postgres.{name}")


async def connect(cluster: PgCluster, user: str = "postgres", dbname: str = "postgres") -> Any:
    return await psycopg.AsyncConnection.connect(cluster.dsn(user, dbname), autocommit=True)


async def collect(
    name: str,
    cluster: PgCluster,
    *,
    user: str = "postgres",
    dbname: str = "postgres",
    config: Any = None,
) -> tuple[Any, Samples]:
    """One poll of one collector, as the exporter's role: (part, samples by name+labels)."""
    mod = module(name)
    async with await connect(cluster, user, dbname) as conn:
        version = int(cluster.sql("SHOW server_version_num")[0][0])
        part = await mod.Collector(config or SimpleNamespace()).collect(conn, version)
    samples: Samples = {}
    for family in mod.families(part, TARGET):
        for s in family.samples:
            assert s.labels.get("target") == TARGET, (s.name, s.labels)
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return part, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    key = (name, tuple(sorted({"target": TARGET, **labels}.items())))
    return samples.get(key)


def by_name(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Await ``check()`` until it returns something truthy (statistics arrive late)."""
    deadline = time.monotonic() + timeout
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s: last {last!r}")
        await asyncio.sleep(0.2)


def version_of(cluster: PgCluster) -> int:
    return int(cluster.sql("SHOW server_version_num")[0][0])


# --- every collector -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_every_statement_a_collector_runs_is_listed_and_valid_here(
    pg_primary: PgCluster, name: str
) -> None:
    """OWN_SQL (what the target EXPLAINs to learn its own queryids) covers what runs."""
    mod = module(name)
    version = version_of(pg_primary)
    own = mod.own_sql(None, version) if hasattr(mod, "own_sql") else mod.OWN_SQL
    assert set(own) <= set(mod.OWN_SQL)
    async with await connect(pg_primary) as conn:
        for sql in own:
            if "waitstart" in sql and version < 140000:
                continue
            await conn.execute(("EXPLAIN " + sql).encode())
        # What collect() really sends is among them (vacuum's top-N literal aside),
        # whether through conn.execute or a cursor of its own.
        seen: list[str] = []

        class Spy(psycopg.AsyncCursor[Any]):
            async def execute(self, query: Any, *args: Any, **kw: Any) -> Any:
                seen.append(query.decode() if isinstance(query, bytes) else str(query))
                return await super().execute(query, *args, **kw)

        conn.cursor_factory = Spy
        await mod.Collector(SimpleNamespace()).collect(conn, version)
    assert seen and set(seen) <= set(own), set(seen) - set(own)


# --- database_size ---------------------------------------------------------------------


async def test_database_size_lists_every_database_but_templates_in_bytes(
    pg_primary: PgCluster,
) -> None:
    pg_primary.sql("DROP TABLE IF EXISTS size_probe", dbname="app")
    pg_primary.sql(
        "CREATE TABLE size_probe AS SELECT g, repeat('x', 200) AS pad"
        " FROM generate_series(1, 20000) g",
        dbname="app",
    )
    _, samples = await collect("database_size", pg_primary)
    sizes = {
        dict(labels)["datname"]: v
        for labels, v in by_name(samples, "sparki_postgres_database_size_bytes").items()
    }
    databases = {
        r[0] for r in pg_primary.sql("SELECT datname FROM pg_database WHERE NOT datistemplate")
    }
    assert set(sizes) == databases
    assert "template0" not in sizes and "template1" not in sizes
    (app,) = pg_primary.sql("SELECT pg_database_size('app')")[0]
    assert abs(sizes["app"] - app) <= 0.05 * app
    # 20000 rows of ~230 bytes: the table alone is over 4 MiB more than an empty database.
    assert sizes["app"] > sizes["postgres"] + 4 * 2**20 or sizes["app"] > 4 * 2**20
    pg_primary.sql("DROP TABLE size_probe", dbname="app")


# --- locks -----------------------------------------------------------------------------


async def test_a_lock_wait_shows_as_a_waiting_backend_and_clears(pg_primary: PgCluster) -> None:
    pg_primary.sql("DROP TABLE IF EXISTS lock_probe")
    pg_primary.sql("CREATE TABLE lock_probe (id int PRIMARY KEY, v int)")
    pg_primary.sql("INSERT INTO lock_probe VALUES (1, 0)")
    holder = await connect(pg_primary)
    waiter = await connect(pg_primary)
    try:
        await holder.execute("BEGIN")
        await holder.execute("UPDATE lock_probe SET v = 1 WHERE id = 1")
        blocked = asyncio.create_task(waiter.execute("UPDATE lock_probe SET v = 2 WHERE id = 1"))

        async def waiting() -> Samples | None:
            _, samples = await collect("locks", pg_primary)
            n = value(samples, "sparki_postgres_lock_waiting_backends")
            return samples if n == 1 else None

        samples = await until(waiting)
        # A row lock is waited for as a ShareLock on the holder's transaction ID.
        assert value(samples, "sparki_postgres_locks", mode="ShareLock", state="waiting") == 1
        assert (
            value(samples, "sparki_postgres_locks", mode="RowExclusiveLock", state="granted") or 0
        ) >= 2
        await asyncio.sleep(1.1)
        _, samples = await collect("locks", pg_primary)
        if version_of(pg_primary) >= 140000:
            assert (value(samples, "sparki_postgres_lock_wait_max_seconds") or 0) >= 1.0
        await holder.execute("COMMIT")
        await asyncio.wait_for(blocked, 10)
        _, samples = await collect("locks", pg_primary)
        assert value(samples, "sparki_postgres_lock_waiting_backends") == 0
        assert value(samples, "sparki_postgres_lock_wait_max_seconds") == 0
        waits = {
            labels: v
            for labels, v in by_name(samples, "sparki_postgres_locks").items()
            if dict(labels)["state"] == "waiting"
        }
        # Every mode is there in both states, 0 included: series do not come and go.
        assert len(waits) == len(module("locks").MODES) and not any(waits.values())
    finally:
        await holder.close()
        await waiter.close()
        pg_primary.sql("DROP TABLE IF EXISTS lock_probe")


# --- activity_age ----------------------------------------------------------------------


async def test_an_idle_open_transaction_ages_both_gauges_and_commit_clears_them(
    pg_primary: PgCluster,
) -> None:
    _, samples = await collect("activity_age", pg_primary)
    # The exporter's own backend is in a transaction while it polls: it does not count.
    assert value(samples, "sparki_postgres_oldest_transaction_seconds") == 0
    assert value(samples, "sparki_postgres_oldest_idle_in_transaction_seconds") == 0
    app = await connect(pg_primary)
    try:
        await app.execute("BEGIN")
        await app.execute("SELECT txid_current()")
        await asyncio.sleep(1.5)
        _, samples = await collect("activity_age", pg_primary)
        oldest = value(samples, "sparki_postgres_oldest_transaction_seconds") or 0
        idle = value(samples, "sparki_postgres_oldest_idle_in_transaction_seconds") or 0
        assert 1.4 <= idle <= oldest < 30
        await app.execute("COMMIT")
        _, samples = await collect("activity_age", pg_primary)
        assert value(samples, "sparki_postgres_oldest_transaction_seconds") == 0
        assert value(samples, "sparki_postgres_oldest_idle_in_transaction_seconds") == 0
    finally:
        await app.close()


async def test_a_long_running_statement_is_an_old_transaction_not_an_idle_one(
    pg_primary: PgCluster,
) -> None:
    app = await connect(pg_primary)
    try:
        running = asyncio.create_task(app.execute("SELECT pg_sleep(2.5)"))
        await asyncio.sleep(1.2)
        _, samples = await collect("activity_age", pg_primary)
        assert 1.0 <= (value(samples, "sparki_postgres_oldest_transaction_seconds") or 0) < 3
        assert value(samples, "sparki_postgres_oldest_idle_in_transaction_seconds") == 0
        await asyncio.wait_for(running, 10)
    finally:
        await app.close()


# --- wraparound ------------------------------------------------------------------------


async def test_wraparound_ages_cover_every_database_and_grow_with_transactions(
    pg_primary: PgCluster,
) -> None:
    _, before = await collect("wraparound", pg_primary)
    ages = by_name(before, "sparki_postgres_database_xid_age")
    datnames = {dict(labels)["datname"] for labels in ages}
    assert datnames == {r[0] for r in pg_primary.sql("SELECT datname FROM pg_database")}
    assert "template0" in datnames
    assert all(v > 0 for v in ages.values())
    assert all(v >= 0 for v in by_name(before, "sparki_postgres_database_mxid_age").values())
    with pg_primary.connect() as conn:
        for _ in range(5):
            conn.execute("SELECT txid_current()")
    _, after = await collect("wraparound", pg_primary)
    grown = value(after, "sparki_postgres_database_xid_age", datname="app")
    assert grown is not None
    assert grown >= (value(before, "sparki_postgres_database_xid_age", datname="app") or 0) + 5
    (direct,) = pg_primary.sql("SELECT age(datfrozenxid) FROM pg_database WHERE datname = 'app'")[0]
    assert abs(grown - direct) < 5


async def test_multixacts_age_the_mxid_gauge(pg_cluster: PgCluster) -> None:
    """Two sessions share a row lock: that creates a multixact, and mxid_age moves."""
    pg_cluster.sql("CREATE TABLE mx (id int PRIMARY KEY)")
    pg_cluster.sql("INSERT INTO mx VALUES (1)")
    _, before = await collect("wraparound", pg_cluster)
    for _ in range(3):
        a, b = await connect(pg_cluster), await connect(pg_cluster)
        for conn in (a, b):
            await conn.execute("BEGIN")
            await conn.execute("SELECT * FROM mx FOR SHARE")
        for conn in (a, b):
            await conn.execute("COMMIT")
            await conn.close()
    _, after = await collect("wraparound", pg_cluster)
    old = value(before, "sparki_postgres_database_mxid_age", datname="postgres") or 0
    assert (value(after, "sparki_postgres_database_mxid_age", datname="postgres") or 0) > old


# --- vacuum ----------------------------------------------------------------------------


async def test_dead_tuples_of_the_top_tables_and_the_rest_as_other(pg_primary: PgCluster) -> None:
    tables = {"vac_a": 400, "vac_b": 300, "vac_c": 200, "vac_d": 100}
    for table, dead in tables.items():
        pg_primary.sql(f"DROP TABLE IF EXISTS {table}", dbname="app")
        pg_primary.sql(
            f"CREATE TABLE {table} (id int) WITH (autovacuum_enabled = false)", dbname="app"
        )
        pg_primary.sql(f"INSERT INTO {table} SELECT generate_series(1, 1000)", dbname="app")
        pg_primary.sql(f"DELETE FROM {table} WHERE id <= {dead}", dbname="app")  # noqa: S608
    config = SimpleNamespace(vacuum_top_n=2)

    async def counted() -> Samples | None:
        _, samples = await collect("vacuum", pg_primary, dbname="app", config=config)
        dead = value(
            samples,
            "sparki_postgres_table_dead_tuples",
            datname="app",
            schemaname="public",
            relname="vac_b",
        )
        return samples if dead == 300 else None

    samples = await until(counted)
    dead = {
        dict(labels)["relname"]: v
        for labels, v in by_name(samples, "sparki_postgres_table_dead_tuples").items()
    }
    # The top two by dead tuples, then every other table of the database summed.
    assert dead["vac_a"] == 400 and dead["vac_b"] == 300
    assert set(dead) == {"vac_a", "vac_b", "other"}
    assert dead["other"] >= 300  # vac_c and vac_d, and whatever else lives in app
    live = value(
        samples,
        "sparki_postgres_table_live_tuples",
        datname="app",
        schemaname="public",
        relname="vac_a",
    )
    assert live == 600
    # Never vacuumed nor analyzed: no sample rather than a made-up age.
    labels = {"datname": "app", "schemaname": "public", "relname": "vac_a"}
    assert value(samples, "sparki_postgres_table_last_vacuum_age_seconds", **labels) is None
    assert value(samples, "sparki_postgres_table_last_analyze_age_seconds", **labels) is None

    pg_primary.sql("VACUUM ANALYZE vac_a", dbname="app")

    async def vacuumed() -> Samples | None:
        _, samples = await collect("vacuum", pg_primary, dbname="app", config=config)
        top = {dict(k)["relname"] for k in by_name(samples, "sparki_postgres_table_dead_tuples")}
        return samples if top == {"vac_b", "vac_c", "other"} else None

    # vac_a lost its dead tuples: vac_b and vac_c lead now and vac_a went into "other".
    await until(vacuumed)
    wide = SimpleNamespace(vacuum_top_n=50)
    _, samples = await collect("vacuum", pg_primary, dbname="app", config=wide)
    for name in ("last_vacuum", "last_analyze"):
        age = value(samples, f"sparki_postgres_table_{name}_age_seconds", **labels)
        assert age is not None and 0 <= age < 30, (name, age)
        never = {**labels, "relname": "vac_b"}
        assert value(samples, f"sparki_postgres_table_{name}_age_seconds", **never) is None
    assert "other" not in {
        dict(k)["relname"] for k in by_name(samples, "sparki_postgres_table_dead_tuples")
    }
    (max_workers,) = pg_primary.sql("SHOW autovacuum_max_workers")[0]
    assert value(samples, "sparki_postgres_autovacuum_max_workers") == int(max_workers)
    workers = value(samples, "sparki_postgres_autovacuum_workers")
    assert workers is not None and 0 <= workers <= int(max_workers)
    for table in tables:
        pg_primary.sql(f"DROP TABLE {table}", dbname="app")


async def test_few_tables_export_no_other_row(pg_cluster: PgCluster) -> None:
    pg_cluster.sql("CREATE TABLE only_one (id int)")
    _, samples = await collect("vacuum", pg_cluster)
    names = {dict(k)["relname"] for k in by_name(samples, "sparki_postgres_table_dead_tuples")}
    assert names == {"only_one"}


# --- checkpoints -----------------------------------------------------------------------


async def test_a_checkpoint_counts_as_requested_and_wal_grows(pg_primary: PgCluster) -> None:
    _, before = await collect("checkpoints", pg_primary)
    pg_primary.sql("CREATE TABLE IF NOT EXISTS ckpt_probe (id int)")
    pg_primary.sql("INSERT INTO ckpt_probe SELECT generate_series(1, 1000)")
    pg_primary.sql("CHECKPOINT")
    requested = "sparki_postgres_checkpoints_total"

    async def counted() -> Samples | None:
        _, after = await collect("checkpoints", pg_primary)
        grew = (value(after, requested, kind="requested") or 0) > (
            value(before, requested, kind="requested") or 0
        )
        return after if grew else None

    after = await until(counted)
    assert value(after, requested, kind="timed") is not None
    written = "sparki_postgres_checkpoint_buffers_written_total"
    assert (value(after, written) or 0) > (value(before, written) or 0)
    for counter in ("sparki_postgres_wal_records_total", "sparki_postgres_wal_bytes_total"):
        assert (value(after, counter) or 0) > (value(before, counter) or 0), counter
    assert value(after, "sparki_postgres_wal_buffers_full_total") is not None
    assert value(after, "sparki_postgres_checkpoint_write_seconds_total") is not None
    pg_primary.sql("DROP TABLE ckpt_probe")


# --- archiver --------------------------------------------------------------------------


async def test_a_failing_archive_command_counts_failures(pg_major: int | None) -> None:
    cluster = make_primary(
        major=pg_major, settings={"archive_mode": "on", "archive_command": "'false'"}
    )
    try:
        cluster.sql("CREATE TABLE arch (id int)")
        cluster.sql("INSERT INTO arch SELECT generate_series(1, 100)")
        cluster.sql("SELECT pg_switch_wal()")

        async def failed() -> Samples | None:
            _, samples = await collect("archiver", cluster)
            return (
                samples
                if (value(samples, "sparki_postgres_archiver_failed_total") or 0) >= 1
                else None
            )

        samples = await until(failed, timeout=30)
        assert value(samples, "sparki_postgres_archiver_enabled") == 1
        assert value(samples, "sparki_postgres_archiver_archived_total") == 0
        assert value(samples, "sparki_postgres_archiver_last_archive_age_seconds") is None
        assert 0 <= (value(samples, "sparki_postgres_archiver_last_failure_age_seconds") or -1) < 60
    finally:
        cluster.destroy()


async def test_a_server_without_archiving_says_so(pg_primary: PgCluster) -> None:
    _, samples = await collect("archiver", pg_primary)
    assert value(samples, "sparki_postgres_archiver_enabled") == 0
    assert value(samples, "sparki_postgres_archiver_failed_total") == 0


# --- settings --------------------------------------------------------------------------

SHOW_UNITS = {
    "": 1.0,
    "B": 1.0,
    "kB": 1024.0,
    "MB": 1024.0**2,
    "GB": 1024.0**3,
    "TB": 1024.0**4,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_show(text: str) -> float:
    """SHOW's human form ('128MB', '5min', 'on', '0') in bytes, seconds or 0/1."""
    if text in ("on", "off"):
        return 1.0 if text == "on" else 0.0
    match = re.fullmatch(r"(-?\d+)\s*([a-zA-Z]*)", text)
    assert match, text
    number = float(match.group(1))
    return number if number < 0 else number * SHOW_UNITS[match.group(2)]


async def test_settings_equal_show_in_base_units(pg_cluster: PgCluster) -> None:
    pg_cluster.sql("ALTER SYSTEM SET work_mem = '6MB'")
    pg_cluster.sql("ALTER SYSTEM SET idle_in_transaction_session_timeout = '90s'")
    pg_cluster.sql("SELECT pg_reload_conf()")
    await asyncio.sleep(0.5)
    _, samples = await collect("settings", pg_cluster)
    settings = module("settings").SETTINGS
    for name, (suffix, _) in settings.items():
        (shown,) = pg_cluster.sql(f"SHOW {name}")[0]
        got = value(samples, f"sparki_postgres_setting_{suffix}")
        assert got == parse_show(str(shown)), (name, shown, got)
    assert value(samples, "sparki_postgres_setting_work_mem_bytes") == 6 * 2**20
    assert (
        value(samples, "sparki_postgres_setting_idle_in_transaction_session_timeout_seconds") == 90
    )
    assert value(samples, "sparki_postgres_setting_max_connections") == 40  # devstack's conf
    assert value(samples, "sparki_postgres_setting_shared_buffers_bytes") == parse_show(
        str(pg_cluster.sql("SHOW shared_buffers")[0][0])
    )


# --- privileges ------------------------------------------------------------------------


async def test_a_role_without_pg_monitor_gets_what_it_may_read(pg_cluster: PgCluster) -> None:
    """Without pg_monitor only activity_age is partial, and says so; the rest is whole."""
    pg_cluster.ensure_monitor_role()
    pg_cluster.sql("CREATE ROLE plain LOGIN")
    pg_cluster.sql("CREATE ROLE other_app LOGIN")
    pg_cluster.sql("CREATE DATABASE private_db")
    pg_cluster.sql("REVOKE CONNECT ON DATABASE private_db FROM PUBLIC")
    app = await connect(pg_cluster, user="other_app")
    try:
        await app.execute("BEGIN")
        await app.execute("SELECT txid_current()")
        await asyncio.sleep(1.1)
        for name in NAMES:  # every collector runs to the end as the plain role
            await collect(name, pg_cluster, user="plain")

        _, plain = await collect("activity_age", pg_cluster, user="plain")
        _, monitor = await collect("activity_age", pg_cluster, user="sparki_monitor")
        assert value(plain, "sparki_postgres_oldest_idle_in_transaction_seconds") == 0
        assert (value(plain, "sparki_postgres_activity_hidden_backends") or 0) >= 1
        assert (value(monitor, "sparki_postgres_oldest_idle_in_transaction_seconds") or 0) >= 1
        assert value(monitor, "sparki_postgres_activity_hidden_backends") == 0

        _, plain = await collect("database_size", pg_cluster, user="plain")
        _, monitor = await collect("database_size", pg_cluster, user="sparki_monitor")
        assert value(plain, "sparki_postgres_database_size_bytes", datname="private_db") is None
        assert value(plain, "sparki_postgres_database_size_bytes", datname="postgres")
        assert value(monitor, "sparki_postgres_database_size_bytes", datname="private_db")

        # pg_locks is readable by all: the plain role sees the other role's locks.
        _, locks = await collect("locks", pg_cluster, user="plain")
        held = value(locks, "sparki_postgres_locks", mode="ExclusiveLock", state="granted")
        assert (held or 0) >= 1  # other_app's lock on its own transaction ID
    finally:
        await app.close()


# --- through the exporter ----------------------------------------------------------------

FAST = {"poll_interval": "1s", "poll_timeout": "0.8s"}


async def test_the_exporter_serves_the_collectors_and_one_failing_degrades_alone(
    pg_cluster: PgCluster, start_exporter: Any
) -> None:
    """A collector refused by the server is marked failed; the target stays up."""
    pg_cluster.sql("REVOKE SELECT ON pg_stat_archiver FROM PUBLIC")
    exp = await start_exporter(
        {**FAST, "postgres": [pg_cluster.target("h", collectors={"settings": False})]}
    )
    await exp.polls("postgres", "h", 2)
    assert await exp.value("sparki_up", adapter="postgres", target="h") == 1
    ok = {
        name: await exp.value(
            "sparki_collector_success", adapter="postgres", target="h", collector=name
        )
        for name in NAMES
    }
    assert ok == {**dict.fromkeys(NAMES, 1.0), "archiver": 0.0, "settings": None}
    assert await exp.value("sparki_postgres_archiver_failed_total", target="h") is None
    assert await exp.value("sparki_postgres_setting_work_mem_bytes", target="h") is None
    assert await exp.value("sparki_postgres_oldest_transaction_seconds", target="h") == 0
    assert await exp.value("sparki_postgres_database_xid_age", target="h", datname="app")
    assert (
        await exp.value("sparki_postgres_checkpoints_total", target="h", kind="timed") is not None
    )
    # The health queries are the exporter's own: never in its statement metrics.
    texts = [
        s.labels["query"] for s in await exp.samples("sparki_postgres_statement_info", target="h")
    ]
    own = [sql[:40] for name in NAMES for sql in module(name).OWN_SQL]
    assert not [t for t in texts if any(t.startswith(o) for o in own)]
    # ...although pg_stat_statements did record them, under the exporter's role.
    recorded = pg_cluster.sql(
        "SELECT query FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid"
        " WHERE r.rolname = 'sparki_monitor' AND s.query LIKE 'SELECT mode, granted%'"
    )
    assert recorded
