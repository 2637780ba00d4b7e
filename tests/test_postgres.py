"""PostgreSQL adapter against real servers made by initdb (see fixtures_pg.py)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from typing import Any

import psycopg
import pytest
from fixtures_core import timed
from fixtures_pg import PgCluster, make_primary
from test_adapters import contract_of

# Every test here runs against each installed PostgreSQL major (fixtures_pg.py).
PG_ALL_MAJORS = True
FAST = {"poll_interval": "1s", "poll_timeout": "0.8s"}

# name -> (type, label names) for every PostgreSQL row of the metric contract: one table
# for every adapter, in test_adapters.py.
CONTRACT = contract_of("postgres")
COMMON = {
    "sparki_up": ("gauge", {"adapter", "target"}),
    "sparki_poll_duration_seconds": ("gauge", {"adapter", "target"}),
    "sparki_last_poll_success_timestamp_seconds": ("gauge", {"adapter", "target"}),
    "sparki_poll_errors": ("counter", {"adapter", "target", "reason"}),
    "sparki_exporter_build_info": ("gauge", {"version"}),
}


def run_many(cluster: PgCluster, sql: str, times: int, dbname: str = "app") -> None:
    with cluster.connect(dbname) as conn:
        for _ in range(times):
            conn.execute(sql.encode())


def bucket(samples: list, le: str) -> float:
    return next(s.value for s in samples if s.labels["le"] == le)


async def hist(exp, target: str, datname: str) -> list:
    return await exp.samples(
        "sparki_postgres_statement_duration_seconds_bucket", target=target, datname=datname
    )


async def test_every_contract_metric_with_type_labels_and_units(
    pg_primary: PgCluster, pg_standby: PgCluster, start_exporter, tmp_path
) -> None:
    run_many(pg_primary, "SELECT pg_sleep(0.001)", 3)
    exp = await start_exporter(
        {
            **FAST,
            "postgres": [
                pg_primary.target("primary"),
                {"name": "standby", "dsn": pg_standby.dsn(user="sparki_monitor")},
            ],
        }
    )
    await exp.polls("postgres", "primary", 2)
    run_many(pg_primary, "SELECT pg_sleep(0.001)", 3)
    await exp.polls("postgres", "primary", 2)
    await exp.polls("postgres", "standby", 1)
    fams = await exp.families()
    for name, (mtype, labels) in {**CONTRACT, **COMMON}.items():
        assert name in fams, f"{name} missing"
        fam = fams[name]
        assert fam.type == mtype, f"{name} is {fam.type}, want {mtype}"
        for sample in fam.samples:
            got = set(sample.labels) - {"le"}
            assert got == labels, f"{sample.name} labels {got} != {labels}"
        if name.endswith("_seconds") or name.endswith("_bytes"):
            assert fam.samples, f"{name} has no samples"
    hist_bounds = {
        s.labels["le"]
        for s in fams["sparki_postgres_statement_duration_seconds"].samples
        if "le" in s.labels
    }
    assert {"0.05", "0.1"} <= hist_bounds
    probe_bounds = {
        s.labels["le"]
        for s in fams["sparki_postgres_probe_duration_seconds"].samples
        if "le" in s.labels
    }
    assert {"0.05", "0.1"} <= probe_bounds
    assert await exp.value("sparki_up", adapter="postgres", target="standby") == 1
    assert (
        await exp.value(
            "sparki_capability",
            adapter="postgres",
            target="primary",
            capability="pg_stat_statements",
        )
        == 1
    )
    # max_connections minus the 3 reserved superuser slots of the fixture's config.
    assert await exp.value("sparki_postgres_max_connections", target="primary") == 37

    out = tmp_path / "metrics.txt"
    out.write_text(await exp.scrape())
    check = subprocess.run(
        ["promtool", "check", "metrics"], stdin=out.open(), capture_output=True, text=True
    )
    # promtool lints (e.g. histogram naming) go to stdout; real parse errors fail.
    assert check.returncode == 0, check.stdout + check.stderr


async def test_histogram_places_60ms_statements_in_the_50_to_100ms_bucket(
    pg_primary: PgCluster, start_exporter
) -> None:
    pg_primary.sql("CREATE DATABASE hist")
    exp = await start_exporter({**FAST, "postgres": [pg_primary.target("h")]})
    run_many(pg_primary, "SELECT pg_sleep(0.06)", 1, "hist")  # first sight: baseline
    await exp.polls("postgres", "h", 2)
    before = await hist(exp, "h", "hist")
    run_many(pg_primary, "SELECT pg_sleep(0.06)", 12, "hist")
    await exp.polls("postgres", "h", 2)
    after = await hist(exp, "h", "hist")

    def band(samples: list) -> float:
        return bucket(samples, "0.1") - bucket(samples, "0.05")

    assert band(after) - band(before) == 12
    assert bucket(after, "0.05") == bucket(before, "0.05"), "60 ms calls must not land below 50 ms"
    count = await exp.value(
        "sparki_postgres_statement_duration_seconds_count", target="h", datname="hist"
    )
    calls = await exp.samples("sparki_postgres_statement_calls_total", target="h", datname="hist")
    # Everything observed by the histogram is in the per-statement counters, and vice versa.
    assert sum(s.value for s in calls) == count
    info = await exp.samples("sparki_postgres_statement_info", target="h", datname="hist")
    assert any("pg_sleep" in s.labels["query"] for s in info)


async def test_reset_and_per_entry_reset_never_yield_bogus_observations(
    pg_cluster: PgCluster, start_exporter
) -> None:
    exp = await start_exporter({**FAST, "postgres": [pg_cluster.target("r")]})
    sleep = "SELECT pg_sleep(0.06)"
    run_many(pg_cluster, sleep, 1)
    await exp.polls("postgres", "r", 2)
    run_many(pg_cluster, sleep, 10)
    await exp.polls("postgres", "r", 2)
    base = await hist(exp, "r", "app")
    assert bucket(base, "0.1") - bucket(base, "0.05") == 10

    # Full reset, then fewer calls than before: the counters went backwards.
    pg_cluster.sql("SELECT pg_stat_statements_reset()")
    run_many(pg_cluster, sleep, 3)
    await exp.polls("postgres", "r", 2)
    after_reset = await hist(exp, "r", "app")
    for a, b in zip(base, after_reset, strict=True):
        assert b.value >= a.value, "a histogram bucket went down"
    assert bucket(after_reset, "0.1") - bucket(base, "0.1") <= 3

    # Per-entry reset (no stats_reset change): the entry restarts at a lower count.
    run_many(pg_cluster, sleep, 4)
    await exp.polls("postgres", "r", 2)
    mid = await hist(exp, "r", "app")
    qid = pg_cluster.sql("SELECT queryid FROM pg_stat_statements WHERE query LIKE '%pg_sleep%'")
    for (q,) in qid:
        pg_cluster.sql(f"SELECT pg_stat_statements_reset(0, 0, {q})")
    run_many(pg_cluster, sleep, 2)
    await exp.polls("postgres", "r", 2)
    run_many(pg_cluster, sleep, 5)
    await exp.polls("postgres", "r", 2)
    end = await hist(exp, "r", "app")
    for a, b in zip(mid, end, strict=True):
        assert b.value >= a.value
    gained = (bucket(end, "0.1") - bucket(end, "0.05")) - (bucket(mid, "0.1") - bucket(mid, "0.05"))
    assert 5 <= gained <= 7, gained  # the 5 after the new baseline; never more than made
    total = await exp.value(
        "sparki_postgres_statement_duration_seconds_sum", target="r", datname="app"
    )
    assert total is not None and total >= 0


async def test_eviction_counts_deallocations_and_stays_monotonic(start_exporter) -> None:
    cluster = make_primary(settings={"pg_stat_statements.max": "100"})
    try:
        exp = await start_exporter({**FAST, "postgres": [cluster.target("e")]})
        sleep = "SELECT pg_sleep(0.06)"
        run_many(cluster, sleep, 1)
        await exp.polls("postgres", "e", 2)
        before = await hist(exp, "e", "app")
        made = 0
        with cluster.connect("app") as conn:
            for round_ in range(3):
                for i in range(150):  # 150 distinct statements overflow max=100
                    width = round_ * 150 + i + 1  # a distinct shape: a distinct entry
                    conn.execute(("SELECT " + ", ".join(["1"] * width)).encode())
                for _ in range(3):
                    conn.execute(sleep.encode())
                    made += 1
                await exp.polls("postgres", "e", 1)
        await exp.polls("postgres", "e", 1)
        after = await hist(exp, "e", "app")
        for a, b in zip(before, after, strict=True):
            assert b.value >= a.value
        gained = (bucket(after, "0.1") - bucket(after, "0.05")) - (
            bucket(before, "0.1") - bucket(before, "0.05")
        )
        assert 0 <= gained <= made
        dealloc = await exp.value("sparki_postgres_statements_deallocated_total", target="e")
        assert dealloc and dealloc > 0
        tracked = await exp.value("sparki_postgres_statements_tracked", target="e")
        assert tracked is not None and tracked <= 100
    finally:
        cluster.destroy()


async def test_replication_lag_on_primary_and_standby(
    pg_primary: PgCluster, pg_standby: PgCluster, start_exporter
) -> None:
    exp = await start_exporter(
        {
            **FAST,
            "postgres": [
                pg_primary.target("primary"),
                {"name": "standby", "dsn": pg_standby.dsn(user="sparki_monitor")},
            ],
        }
    )
    pg_primary.sql("CREATE TABLE IF NOT EXISTS lag_t (x int)")

    async def caught_up() -> bool:
        b = await exp.value(
            "sparki_postgres_replication_lag_bytes", target="primary", replica="standby1"
        )
        s = await exp.value(
            "sparki_postgres_replication_lag_seconds", target="standby", replica="self"
        )
        return b == 0 and s == 0

    await exp.wait_for(caught_up, timeout=20)
    # An idle primary: lag stays 0 poll after poll, it does not grow with the clock.
    for _ in range(3):
        await exp.polls("postgres", "primary", 1)
        await exp.polls("postgres", "standby", 1)
        assert (
            await exp.value(
                "sparki_postgres_replication_lag_seconds", target="primary", replica="standby1"
            )
            == 0
        )
        assert (
            await exp.value(
                "sparki_postgres_replication_lag_seconds", target="standby", replica="self"
            )
            == 0
        )

    pg_standby.sql("SELECT pg_wal_replay_pause()")
    try:
        pg_primary.sql("INSERT INTO lag_t SELECT generate_series(1, 20000)")
        await asyncio.sleep(1.5)
        pg_primary.sql("INSERT INTO lag_t VALUES (1)")

        async def lagging() -> bool:
            pb = await exp.value(
                "sparki_postgres_replication_lag_bytes", target="primary", replica="standby1"
            )
            sb = await exp.value(
                "sparki_postgres_replication_lag_bytes", target="standby", replica="self"
            )
            ss = await exp.value(
                "sparki_postgres_replication_lag_seconds", target="standby", replica="self"
            )
            return bool(pb and pb > 0 and sb and sb > 0 and ss and ss > 0.5)

        await exp.wait_for(lagging, timeout=20)
    finally:
        pg_standby.sql("SELECT pg_wal_replay_resume()")
    await exp.wait_for(caught_up, timeout=20)


async def test_dead_targets_are_down_with_reason_and_recover(
    pg_cluster: PgCluster, pg_primary: PgCluster, hung_server, start_exporter
) -> None:
    exp = await start_exporter(
        {
            **FAST,
            "postgres": [
                pg_cluster.target("flaky"),
                pg_primary.target("healthy"),
                {"name": "hung", "dsn": f"postgresql://x@127.0.0.1:{hung_server.port}/postgres"},
            ],
        }
    )
    await exp.wait_for(lambda: exp.value("sparki_up", adapter="postgres", target="flaky"))
    pg_cluster.stop()
    with timed() as t:
        await exp.wait_for(
            lambda: exp.value(
                "sparki_last_poll_error_reason",
                adapter="postgres",
                target="flaky",
                reason="connect",
            ),
            timeout=10,
        )
    assert t[0] < 5
    assert await exp.value("sparki_up", adapter="postgres", target="flaky") == 0
    assert (
        await exp.value(
            "sparki_last_poll_error_reason", adapter="postgres", target="hung", reason="timeout"
        )
        == 1
    )
    assert await exp.value("sparki_up", adapter="postgres", target="hung") == 0

    # /metrics stays fast and the healthy target keeps updating meanwhile.
    ts1 = await exp.value(
        "sparki_last_poll_success_timestamp_seconds", adapter="postgres", target="healthy"
    )
    for _ in range(20):
        with timed() as t:
            await exp.scrape()
        assert t[0] < 0.5, f"scrape took {t[0]:.3f}s"
    await exp.polls("postgres", "healthy", 2)
    ts2 = await exp.value(
        "sparki_last_poll_success_timestamp_seconds", adapter="postgres", target="healthy"
    )
    assert ts2 > ts1
    assert await exp.value("sparki_up", adapter="postgres", target="healthy") == 1
    # The hung target's polls end at the deadline; none pile up.
    hung = exp.runner("postgres", "hung").state
    assert hung.last_duration is not None and hung.last_duration < 0.8 + 1.5

    pg_cluster.start()
    await exp.wait_for(
        lambda: exp.value("sparki_up", adapter="postgres", target="flaky"), timeout=15
    )
    assert await exp.samples("sparki_last_poll_error_reason", target="flaky") == []


async def test_frozen_server_turns_stale_then_recovers(
    pg_primary: PgCluster, tcp_proxy, start_exporter
) -> None:
    pg_primary.ensure_monitor_role()
    proxy = tcp_proxy(pg_primary.port)
    exp = await start_exporter(
        {
            **FAST,
            "postgres": [
                {
                    "name": "frozen",
                    "dsn": f"postgresql://sparki_monitor@127.0.0.1:{proxy.port}/postgres",
                }
            ],
        }
    )
    await exp.wait_for(lambda: exp.value("sparki_up", adapter="postgres", target="frozen"))
    proxy.blackhole()
    await exp.wait_for(
        lambda: exp.value(
            "sparki_last_poll_error_reason", adapter="postgres", target="frozen", reason="timeout"
        ),
        timeout=10,
    )

    # Data of the last good poll stays until it is three intervals old, then goes.
    async def dropped() -> bool:
        return await exp.value("sparki_postgres_max_connections", target="frozen") is None

    await exp.wait_for(dropped, timeout=10)
    assert await exp.value("sparki_up", adapter="postgres", target="frozen") == 0
    proxy.blackhole(False)
    await exp.wait_for(
        lambda: exp.value("sparki_up", adapter="postgres", target="frozen"), timeout=15
    )
    assert await exp.value("sparki_postgres_max_connections", target="frozen") == 37


async def test_exporter_never_waits_on_locks_or_piles_up_connections(
    pg_cluster: PgCluster, start_exporter
) -> None:
    """A catalog locked by someone else costs each collector reading it one
    lock_timeout: those collectors degrade (sparki_collector_success 0) while the
    target stays up with the rest, no connection piles up, and all recover after.

    Four collectors read pg_database, so a locked poll takes four lock timeouts plus
    the rest: the poll timeout leaves room for that on a loaded machine."""
    exp = await start_exporter(
        {
            "poll_interval": "2s",
            "poll_timeout": "1.9s",
            "postgres": [pg_cluster.target("locked", lock_timeout="100ms")],
        }
    )
    await exp.wait_for(lambda: exp.value("sparki_up", adapter="postgres", target="locked"))
    release = threading.Event()

    def hold_lock() -> None:
        with pg_cluster.connect() as conn, conn.transaction():
            conn.execute(b"LOCK TABLE pg_database IN ACCESS EXCLUSIVE MODE")
            release.wait(6)

    def database_ok() -> Any:
        return exp.value(
            "sparki_collector_success", adapter="postgres", target="locked", collector="database"
        )

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        await exp.wait_for(lambda: _is(database_ok(), 0.0), timeout=10)
        assert await exp.value("sparki_up", adapter="postgres", target="locked") == 1
        # The probe does not read the catalog: the target is alive, its data partial.
        await asyncio.sleep(2.5)
        rows = await asyncio.to_thread(
            pg_cluster.sql,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sparki-exporter'",
        )
        assert rows[0][0] <= 2
    finally:
        release.set()
        await asyncio.to_thread(holder.join)
    await exp.wait_for(lambda: _is(database_ok(), 1.0), timeout=10)
    assert await exp.value("sparki_up", adapter="postgres", target="locked") == 1
    settings = await asyncio.to_thread(
        pg_cluster.sql,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sparki-exporter' "
        "AND usename = 'sparki_monitor'",
    )
    assert settings[0][0] == 1


async def _is(value: Any, wanted: float) -> bool:
    return (await value) == wanted


async def test_missing_preload_and_missing_extension_keep_the_rest_working(
    start_exporter, captured_logs
) -> None:
    no_preload = make_primary(preload=False)
    no_ext = make_primary()
    no_ext.sql("DROP EXTENSION pg_stat_statements")
    try:
        exp = await start_exporter(
            {**FAST, "postgres": [no_preload.target("nopreload"), no_ext.target("noext")]}
        )
        await exp.polls("postgres", "nopreload", 3)
        await exp.polls("postgres", "noext", 3)
        for name in ("nopreload", "noext"):
            assert await exp.value("sparki_up", adapter="postgres", target=name) == 1
            assert (
                await exp.value(
                    "sparki_capability",
                    adapter="postgres",
                    target=name,
                    capability="pg_stat_statements",
                )
                == 0
            )
            assert await exp.value("sparki_postgres_max_connections", target=name) == 37
            assert await exp.samples("sparki_postgres_statement_calls_total", target=name) == []
        logs = captured_logs()
        assert logs.count("shared_preload_libraries") == 1, "one log line, not one per poll"
        assert logs.count("CREATE EXTENSION pg_stat_statements") == 1
    finally:
        no_preload.destroy()
        no_ext.destroy()


async def test_password_never_appears_anywhere(
    pg_primary: PgCluster, start_exporter, captured_logs, tmp_path
) -> None:
    secret = "s3cr3t-Pa55-word"
    if not pg_primary.sql("SELECT 1 FROM pg_roles WHERE rolname = 'sparki_pw'"):
        pg_primary.sql(f"CREATE ROLE sparki_pw LOGIN PASSWORD '{secret}' IN ROLE pg_monitor")
    secret_file = tmp_path / "pw"
    secret_file.write_text("wrong-" + secret + "\n")
    exp = await start_exporter(
        {
            **FAST,
            "postgres": [
                {
                    "name": "good",
                    "dsn": f"postgresql://sparki_pw@127.0.0.1:{pg_primary.port}/postgres",
                    "password": secret,
                },
                {
                    "name": "indsn",
                    "dsn": f"postgresql://sparki_pw:{secret}@127.0.0.1:{pg_primary.port}/x",
                },
                {
                    "name": "bad",
                    "dsn": f"postgresql://sparki_pw@127.0.0.1:{pg_primary.port}/postgres",
                    "password_file": str(secret_file),
                },
            ],
        }
    )
    await exp.wait_for(lambda: exp.value("sparki_up", adapter="postgres", target="good"))
    await exp.wait_for(
        lambda: exp.value(
            "sparki_last_poll_error_reason", adapter="postgres", target="bad", reason="auth"
        )
    )
    await exp.polls("postgres", "indsn", 2)  # database x does not exist: an error text
    body = (await exp.get("/metrics"))[2].decode()
    page = (await exp.get("/"))[2].decode()
    om = (await exp.get("/metrics", headers={"Accept": "application/openmetrics-text"}))[2]
    state_errors = " ".join(str(r.state.last_error) for r in exp.exporter.runners)
    for where, text in (
        ("metrics", body),
        ("page", page),
        ("openmetrics", om.decode()),
        ("logs", captured_logs()),
        ("errors", state_errors),
    ):
        assert secret not in text, f"password leaked into {where}"
    assert f":{pg_primary.port}" not in body  # no address or DSN in any label either
    assert "CREATE ROLE ... PASSWORD <hidden>" in body  # shown as a placeholder
    assert "authentication failed" in page


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:hunter22@h:notaport/db",
        "postgresql://u:hunter22@h/db?foo=bar",
        "host=h password=hunter22 bogus",
    ],
)
def test_dsn_errors_do_not_echo_the_dsn(dsn: str) -> None:
    from exporter.config import ConfigError, validate

    with pytest.raises(ConfigError) as err:
        validate({"postgres": [{"name": "x", "dsn": dsn}]}, {})
    assert "hunter22" not in str(err.value)
    assert err.value.problems[0][0] == "postgres.0.dsn"


async def test_role_without_pg_read_all_stats_still_polls(pg_primary, start_exporter) -> None:
    if not pg_primary.sql("SELECT 1 FROM pg_roles WHERE rolname = 'plain'"):
        pg_primary.sql("CREATE ROLE plain LOGIN")
    exp = await start_exporter(
        {**FAST, "postgres": [{"name": "plain", "dsn": pg_primary.dsn(user="plain")}]}
    )
    await exp.polls("postgres", "plain", 2)
    assert await exp.value("sparki_up", adapter="postgres", target="plain") == 1
    conns = await exp.samples("sparki_postgres_connections", target="plain")
    assert sum(s.value for s in conns) >= 1


def test_statement_text_never_keeps_literals() -> None:
    from exporter.adapters.postgres.statements import clean_query_text

    text = clean_query_text("ALTER ROLE x\n  PASSWORD 'it''s-secret'", 200)
    assert "secret" not in text and "\n" not in text
    assert len(clean_query_text("SELECT " + "a, " * 500, 60)) == 60


@pytest.mark.parametrize("version,col", [(120000, "total_time"), (150000, "total_exec_time")])
def test_statements_sql_per_version(version: int, col: str) -> None:
    from exporter.adapters.postgres.statements import statements_sql

    sql = statements_sql(version)
    assert col in sql and "pg_stat_statements(false)" in sql
    assert ("toplevel" in sql) == (version >= 140000)
    assert "stats_since" in statements_sql(170000)
    # The moments and bounds the estimator needs, under each version's names.
    suffix = "exec_time" if version >= 130000 else "time"
    for column in ("stddev", "min", "max"):
        assert f"s.{column}_{suffix}" in sql


def test_classify_reasons() -> None:
    from exporter.adapters.postgres.errors import classify

    assert classify(psycopg.OperationalError("connection refused")).reason == "connect"
    assert (
        classify(
            psycopg.OperationalError('FATAL:  password authentication failed for user "x"')
        ).reason
        == "auth"
    )
    assert classify(ValueError("boom")).reason == "other"


async def test_query_texts_are_fetched_ahead_and_at_most_once_per_refresh(
    pg_cluster: PgCluster, start_exporter
) -> None:
    """A churning top-N must not read the whole texts file on every poll."""
    # One table each: a column alias alone would not make a distinct queryid.
    for alias in "abcde":
        pg_cluster.sql(f"CREATE TABLE stmt_{alias} AS SELECT 1 AS one", "app")
    pg_cluster.sql("SELECT pg_stat_statements_reset()")
    # Cumulative time ranks them a > b > c > d; with top_n 2, c and d are the next two.
    for alias, seconds in (("a", 0.03), ("b", 0.02), ("c", 0.01), ("d", 0.005)):
        run_many(pg_cluster, f"SELECT pg_sleep({seconds}) FROM stmt_{alias}", 3)  # noqa: S608

    def queryid(alias: str) -> str:
        rows = pg_cluster.sql(
            f"SELECT queryid FROM pg_stat_statements WHERE query LIKE '%FROM stmt_{alias}'",  # noqa: S608
            "app",
        )
        assert len(rows) == 1, rows
        return str(rows[0][0])

    def text_fetches() -> int:
        rows = pg_cluster.sql(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
            "WHERE query LIKE 'SELECT DISTINCT ON (dbid, queryid)%'"
        )
        return int(rows[0][0])

    target = pg_cluster.target("t", statements_top_n=2, query_text_refresh="1h")
    exp = await start_exporter({**FAST, "postgres": [target]})
    await exp.polls("postgres", "t", 2)

    async def has_text(alias: str) -> bool:
        return bool(await exp.samples("sparki_postgres_statement_info", queryid=queryid(alias)))

    assert [await has_text(a) for a in "abcd"] == [True, True, False, False]
    assert text_fetches() == 1

    # c climbs into the top 2: its text was fetched ahead, so it shows at once.
    run_many(pg_cluster, "SELECT pg_sleep(0.03) FROM stmt_c", 5)
    await exp.polls("postgres", "t", 2)
    assert await has_text("c")
    assert text_fetches() == 1

    # e is new and goes straight to the top: counted at once, its text waits for the
    # refresh instead of costing another read of the texts file.
    run_many(pg_cluster, "SELECT pg_sleep(0.001) FROM stmt_e", 1)
    await exp.polls("postgres", "t", 2)
    run_many(pg_cluster, "SELECT pg_sleep(0.04) FROM stmt_e", 5)
    await exp.polls("postgres", "t", 2)
    calls = await exp.value("sparki_postgres_statement_calls_total", queryid=queryid("e"))
    assert calls == 5
    assert not await has_text("e")
    assert text_fetches() == 1
