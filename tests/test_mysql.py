"""The MySQL/MariaDB adapter against real MariaDB servers (devstack/mysql.py).

What a user relies on: statement latency percentiles that count each call once, with
the exporter's own statements left out and resets that never produce bogus
observations; the rest of the target still exported when performance_schema is off
or a privilege is missing; replication threads reported; recovery after a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
from typing import Any

import pytest
from fixtures_core import process_sockets, wait_until
from fixtures_mysql import MysqlServer

from devstack.mysql import MONITOR_PASSWORD
from exporter import config as config_mod
from exporter.adapter import Reason
from exporter.adapters.mysql.config import MysqlConfig, from_env
from exporter.adapters.mysql.replication import channel_of
from exporter.adapters.mysql.statements import clean_text, is_own, rebucket, rescale

FAST = {"poll_interval": "1s", "poll_timeout": "0.9s"}
HIST = "sparki_mysql_statement_duration_seconds"


def cfg(server: MysqlServer, name: str = "m", **extra: Any) -> dict[str, Any]:
    return {**FAST, "mysql": [server.target(name, **extra)]}


async def hist(exp: Any, schema: str, le: str = "+Inf", target: str = "m") -> float:
    value = await exp.value(f"{HIST}_bucket", target=target, schema=schema, le=le)
    return value or 0.0


async def test_statement_calls_land_in_the_right_buckets_once(
    mysql_server: MysqlServer, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg(mysql_server))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
    await exp.polls("mysql", "m", 2)
    before = {le: await hist(exp, "app", le) for le in ("0.05", "0.25", "+Inf")}
    # Five calls of about 60 ms: none below the 50 ms line (the estimator never places
    # a call below the digest's MIN_TIMER_WAIT), all within 250 ms.
    mysql_server.sql(*["SELECT SLEEP(0.06)"] * 5, database="app")
    await exp.polls("mysql", "m", 2)
    after = {le: await hist(exp, "app", le) for le in ("0.05", "0.25", "+Inf")}
    assert after["+Inf"] - before["+Inf"] == 5
    assert after["0.05"] == before["0.05"]
    assert after["0.25"] - before["0.25"] == 5
    await exp.polls("mysql", "m", 2)
    assert await hist(exp, "app") == after["+Inf"], "a call was counted twice"

    infos = await exp.samples("sparki_mysql_statement_info", target="m", schema="app")
    sleep = [s for s in infos if "SLEEP" in s.labels["query"].upper()]
    assert sleep, [s.labels["query"] for s in infos]
    digest = sleep[0].labels["digest"]
    calls = await exp.value(
        "sparki_mysql_statement_calls_total", target="m", schema="app", digest=digest
    )
    assert calls == 5
    assert await exp.value("sparki_capability", target="m", capability="performance_schema") == 1


async def test_the_exporters_own_statements_are_left_out(
    mysql_private: MysqlServer, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg(mysql_private))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
    await exp.polls("mysql", "m", 2)
    totals = await exp.samples(f"{HIST}_count", target="m")
    start = sum(s.value for s in totals)
    await exp.polls("mysql", "m", 4)
    totals = await exp.samples(f"{HIST}_count", target="m")
    assert sum(s.value for s in totals) == start, "the exporter's polls showed up as traffic"
    own = await exp.value("sparki_mysql_statement_digests_own", target="m")
    assert own is not None and own >= 4
    for sample in await exp.samples("sparki_mysql_statement_info", target="m"):
        assert "sparki_exporter" not in sample.labels["query"]


async def test_truncating_the_digest_table_counts_only_new_calls(
    mysql_private: MysqlServer, start_exporter: Any
) -> None:
    mysql_private.sql(*["SELECT v FROM t WHERE id = 1"] * 20, database="app")
    exp = await start_exporter(cfg(mysql_private))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
    await exp.polls("mysql", "m", 2)
    before = await hist(exp, "app")
    mysql_private.sql("TRUNCATE TABLE performance_schema.events_statements_summary_by_digest")
    mysql_private.sql(*["SELECT v FROM t WHERE id = 2"] * 3, database="app")
    await exp.polls("mysql", "m", 3)
    after = await hist(exp, "app")
    # The 3 new calls count; the 20 from before the truncate never come back as new.
    assert 3 <= after - before < 10, (before, after)


async def test_performance_schema_off_degrades_only_statements(
    mysql_nopfs: MysqlServer, start_exporter: Any, captured_logs: Any
) -> None:
    exp = await start_exporter(cfg(mysql_nopfs))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
    await exp.polls("mysql", "m", 3)
    assert await exp.value("sparki_capability", target="m", capability="performance_schema") == 0
    assert await exp.value("sparki_mysql_connections", target="m")
    assert await exp.value("sparki_mysql_queries_total", target="m")
    logs = captured_logs()
    assert logs.count("performance_schema=ON") == 1, logs


async def test_missing_privileges_degrade_their_collectors_alone(
    mysql_server: MysqlServer, start_exporter: Any, captured_logs: Any
) -> None:
    exp = await start_exporter({**FAST, "mysql": [mysql_server.bare_target("bare")]})
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="bare")
    await exp.polls("mysql", "bare", 2)

    async def success(name: str) -> float | None:
        return await exp.value("sparki_collector_success", target="bare", collector=name)

    assert await success("statements") == 0
    assert await success("replication") == 0
    for name in ("connections", "global_status", "innodb"):
        assert await success(name) == 1, name
    cap = await exp.value("sparki_capability", target="bare", capability="performance_schema")
    assert cap == 0
    assert await exp.value("sparki_mysql_innodb_buffer_pool_read_requests_total", target="bare")
    logs = captured_logs()
    assert "GRANT SELECT ON performance_schema.*" in logs
    assert f":{mysql_server.port}" not in logs and "'@'" not in logs, logs


async def test_replica_threads_and_errors(mysql_private: MysqlServer, start_exporter: Any) -> None:
    # A replica of a source that does not exist: the IO thread cannot connect.
    from fixtures_core import free_port

    mysql_private.sql(
        f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={free_port()}, "
        "MASTER_USER='nobody', MASTER_CONNECT_RETRY=1",
        "START SLAVE",
    )
    exp = await start_exporter(cfg(mysql_private))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
    running = "sparki_mysql_replication_running"
    await exp.wait_value(running, 0, timeout=20, target="m", channel="default", thread="io")
    assert await exp.value(running, target="m", channel="default", thread="sql") == 1
    error = "sparki_mysql_replication_last_error"
    await exp.wait_value(error, 1, timeout=30, target="m", channel="default", thread="io")
    # The number says which error: 2003, the source cannot be reached.
    number = "sparki_mysql_replication_last_error_number"
    assert await exp.value(number, target="m", channel="default", thread="io") == 2003
    assert await exp.value(number, target="m", channel="default", thread="sql") == 0
    assert await exp.value("sparki_mysql_replication_lag_seconds", target="m") is None
    mysql_private.sql("STOP SLAVE SQL_THREAD")
    await exp.wait_value(running, 0, timeout=20, target="m", channel="default", thread="sql")


async def test_a_restart_fails_polls_then_recovers_without_bogus_calls(
    mysql_private: MysqlServer, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg(mysql_private))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
    mysql_private.sql(*["SELECT v FROM t WHERE id = 1"] * 50, database="app")
    await exp.polls("mysql", "m", 2)
    before = await hist(exp, "app")
    state = exp.runner("mysql", "m").state
    await asyncio.to_thread(mysql_private.stop)
    await exp.polls("mysql", "m", 1)
    assert state.last_reason == Reason.CONNECT, state.last_error
    await asyncio.to_thread(mysql_private._launch)
    mysql_private.sql(*["SELECT v FROM t WHERE id = 2"] * 4, database="app")
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
    await exp.polls("mysql", "m", 3)
    after = await hist(exp, "app")
    assert 4 <= after - before < 20, (before, after)
    assert str(mysql_private.port) not in (state.last_error or "")


def test_dsn_and_fields() -> None:
    c = MysqlConfig(name="a", dsn="mysql://mon:s%40cret@db.example:3307/shop")
    ep = c.endpoint()
    assert (ep["host"], ep["port"], ep["user"], ep["database"]) == (
        "db.example",
        3307,
        "mon",
        "shop",
    )
    assert ep["password"] == "s@cret"
    assert "s@cret" in c.secrets()
    plain = MysqlConfig(name="b", host="h", port=3310, user="u", password="p")
    assert plain.endpoint()["port"] == 3310 and plain.endpoint()["password"] == "p"


async def test_password_file(mysql_server: MysqlServer, start_exporter: Any, tmp_path: Any) -> None:
    secret = tmp_path / "mysql-password"
    secret.write_text(MONITOR_PASSWORD + "\n")  # as a Kubernetes secret or `echo` writes it
    target = {"name": "by-file", "dsn": mysql_server.dsn(), "password_file": str(secret)}
    config = config_mod.validate({"mysql": [target]}, {})
    (mysql,) = config.mysql
    assert mysql.endpoint()["password"] == MONITOR_PASSWORD  # the newline dropped
    assert MONITOR_PASSWORD in mysql.secrets()  # redacted wherever it would show
    with pytest.raises(config_mod.ConfigError, match="either password or password_file"):
        config_mod.validate({"mysql": [{**target, "password": "x"}]}, {})
    with pytest.raises(config_mod.ConfigError, match="cannot read"):
        config_mod.validate({"mysql": [{**target, "password_file": str(tmp_path / "no")}]}, {})
    exp = await start_exporter({**FAST, "mysql": [target]})
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="by-file")


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://u@h/db", "mysql://u:pw@h:99999/", "mysql:///db", "mysql://u@h/db?ssl=1"],
)
def test_bad_dsns_are_refused_without_echoing_them(dsn: str) -> None:
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate({"mysql": [{"name": "x", "dsn": dsn}]}, {})
    assert "pw" not in str(err.value)


def test_targets_from_env() -> None:
    env = {"MYSQL_HOST": "db", "MYSQL_PORT": "3307", "MYSQL_USER": "mon", "MYSQL_PASSWORD": "pw"}
    (target,) = from_env(env)
    c = MysqlConfig(**target)
    assert c.endpoint()["port"] == 3307 and c.endpoint()["password"] == "pw"
    assert from_env({}) == []


def test_own_statements_and_texts() -> None:
    assert is_own("SELECT 1 AS `sparki_exporter`")
    assert is_own("SHOW GLOBAL STATUS ")
    assert not is_own("SELECT * FROM `t` WHERE `id` = ?")
    assert clean_text("ALTER USER ? IDENTIFIED BY ?", 100).startswith("<statement")
    assert clean_text("SELECT   a\n FROM b", 100) == "SELECT a FROM b"


def test_server_buckets_map_to_upper_edges() -> None:
    bounds = (0.001, 0.01, 0.1)
    # (upper edge in seconds, calls): 0.01 exactly is in le=0.01; 0.0101 is above.
    assert rebucket([(0.0005, 2), (0.01, 3), (0.0101, 4), (5.0, 1)], bounds) == [2, 3, 4, 1]


async def test_deadlocks_and_row_lock_waits_are_counted(
    mysql_server: MysqlServer, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg(mysql_server, "locks"))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="locks")
    await exp.polls("mysql", "locks", 1)
    deadlocks = "sparki_mysql_innodb_deadlocks_total"
    waits = "sparki_mysql_innodb_row_lock_waits_total"
    before = (await exp.value(deadlocks, target="locks"), await exp.value(waits, target="locks"))

    def session(first: int, second: int) -> Any:
        body = (
            f"BEGIN; UPDATE t SET v = v + 1 WHERE id = {first}; DO SLEEP(0.5); "  # noqa: S608
            f"UPDATE t SET v = v + 1 WHERE id = {second}; COMMIT;"
        )
        cmd = [*mysql_server.client_args(), "--database=app", "-e", body]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    a, b = session(1, 2), session(2, 1)
    outs = [await asyncio.to_thread(p.communicate, timeout=60) for p in (a, b)]
    assert any("1213" in err for _, err in outs), outs  # one was the deadlock victim

    # A plain row lock wait, whatever the deadlock's timing was on a busy machine: one
    # session holds the row until a second one is seen waiting for it.
    holder = subprocess.Popen(
        [*mysql_server.client_args(), "--database=app", "-e",
         "BEGIN; UPDATE t SET v = v + 1 WHERE id = 1; DO SLEEP(2); COMMIT;"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    await asyncio.to_thread(
        wait_until,
        lambda: (
            mysql_server.sql("SELECT COUNT(*) FROM information_schema.innodb_trx").strip() != "0"
        ),
        30,
        what="the holder's transaction",
    )
    waiter = subprocess.Popen(
        [*mysql_server.client_args(), "--database=app", "-e",
         "UPDATE t SET v = v + 1 WHERE id = 1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for proc in (holder, waiter):
        await asyncio.to_thread(proc.communicate, timeout=60)
    await exp.polls("mysql", "locks", 2)
    assert await exp.value(deadlocks, target="locks") == (before[0] or 0) + 1
    assert (await exp.value(waits, target="locks") or 0) > (before[1] or 0)


async def test_tls_with_a_verified_server_certificate(tmp_path: Any, start_exporter: Any) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    server = MysqlServer(
        extra=(
            f"--ssl-ca={ca_file}",
            f"--ssl-cert={cert_file}",
            f"--ssl-key={key_file}",
            "--require-secure-transport=ON",
        )
    )
    try:
        await asyncio.to_thread(server.start)
        exp = await start_exporter(
            {
                **FAST,
                "mysql": [
                    server.target("tls", tls_ca_file=str(ca_file)),
                    server.target("plain"),
                ],
            }
        )
        await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="tls")
        state = exp.runner("mysql", "plain").state
        await exp.wait_for(lambda: state.polled, 30)
        await exp.polls("mysql", "plain", 1)
        assert await exp.value("sparki_up", adapter="mysql", target="plain") == 0
        assert state.last_reason is not None
    finally:
        await asyncio.to_thread(server.destroy)


async def test_an_unreachable_server_reads_connect(start_exporter: Any) -> None:
    from fixtures_core import free_port

    port = free_port()  # nothing listens there
    exp = await start_exporter(
        {**FAST, "mysql": [{"name": "gone", "dsn": f"mysql://u@127.0.0.1:{port}/"}]}
    )
    state = exp.runner("mysql", "gone").state
    await exp.wait_for(lambda: state.polled, 15)
    assert state.last_reason == Reason.CONNECT, state.last_error
    assert str(port) not in (state.last_error or "")
    assert await exp.value("sparki_up", adapter="mysql", target="gone") == 0


async def test_a_streaming_replica_reports_running_threads_and_lag(
    start_exporter: Any,
) -> None:
    source = MysqlServer(extra=("--server-id=1", "--log-bin=binlog", "--binlog-format=ROW"))
    replica = MysqlServer(extra=("--server-id=2",))
    try:
        await asyncio.to_thread(source.start)
        await asyncio.to_thread(replica.start)
        source.sql(
            "CREATE USER 'repl'@'%' IDENTIFIED BY 'repl-pw'",
            "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'",
        )
        # From the source's current position: its binlog so far holds the set-up both
        # servers already ran (users, the app schema).
        file, pos = source.sql("SHOW MASTER STATUS").split("\t")[:2]
        replica.sql(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={source.port}, "
            "MASTER_USER='repl', MASTER_PASSWORD='repl-pw', MASTER_USE_GTID=no, "
            f"MASTER_LOG_FILE='{file}', MASTER_LOG_POS={pos}",
            "START SLAVE",
        )
        exp = await start_exporter({**FAST, "mysql": [replica.target("replica")]})
        running = "sparki_mysql_replication_running"
        for thread in ("io", "sql"):
            await exp.wait_value(
                running, 1, timeout=30, target="replica", channel="default", thread=thread
            )
        await exp.wait_value(
            "sparki_mysql_replication_lag_seconds",
            0,
            timeout=30,
            target="replica",
            channel="default",
        )
        source.sql("INSERT INTO app.t VALUES (3, 3)")
        await asyncio.to_thread(
            lambda: wait_until(lambda: replica.sql("SELECT v FROM app.t WHERE id = 3").strip())
        )
        last_error = "sparki_mysql_replication_last_error"
        assert await exp.value(last_error, target="replica", channel="default", thread="sql") == 0
        state = exp.runner("mysql", "replica").state
        assert state.last_error is None or state.last_reason is None, state.last_error
    finally:
        await asyncio.to_thread(replica.destroy)
        await asyncio.to_thread(source.destroy)


async def test_galera_on_a_plain_server_is_a_capability_at_zero(
    mysql_server: MysqlServer, start_exporter: Any, captured_logs: Any
) -> None:
    exp = await start_exporter(cfg(mysql_server, "plain", collectors={"galera": True}))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="plain")
    await exp.polls("mysql", "plain", 2)
    assert await exp.value("sparki_capability", target="plain", capability="galera") == 0
    assert await exp.value("sparki_mysql_galera_cluster_size", target="plain") is None
    assert captured_logs().count("not a Galera node") == 1
    # Off by default: no galera capability (and no alert) for plain servers.
    exp2 = await start_exporter(cfg(mysql_server, "default"))
    await exp2.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="default")
    assert await exp2.value("sparki_capability", target="default", capability="galera") is None


async def calls(exp: Any, schema: str, target: str = "m") -> dict[str, float]:
    """sparki_mysql_statement_calls_total of one schema, by digest."""
    found = await exp.samples("sparki_mysql_statement_calls_total", target=target, schema=schema)
    return {s.labels["digest"]: s.value for s in found}


async def test_top_n_digests_have_their_own_series_and_the_rest_is_other(
    mysql_private: MysqlServer, start_exporter: Any
) -> None:
    # Only what the test runs from here on: the set-up's statements (CREATE TABLE, ...)
    # could outweigh the small ones below.
    mysql_private.sql("TRUNCATE TABLE performance_schema.events_statements_summary_by_digest")
    exp = await start_exporter(cfg(mysql_private, statements_top_n=2))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
    await exp.polls("mysql", "m", 2)
    # Five digests of an application's user; the two sleeping ones hold nearly all the
    # time and run first, so they are the top two from the first poll that sees them.
    mysql_private.sql(
        *["SELECT SLEEP(0.08) FROM t WHERE id = 1"] * 3,
        *["SELECT SLEEP(0.04), v FROM t WHERE id = 2"] * 2,
        *["SELECT v FROM t WHERE id = 1"] * 4,
        *["UPDATE t SET v = v + 1 WHERE id = 2"] * 3,
        *["SELECT COUNT(*) FROM t"] * 2,
        database="app",
        user="app",
    )
    await exp.polls("mysql", "m", 2)
    infos = await exp.samples("sparki_mysql_statement_info", target="m", schema="app")
    texts = {s.labels["query"]: s.labels["digest"] for s in infos}
    assert len(texts) == 2 and all("SLEEP" in t for t in texts), texts
    # SELECT SLEEP(?), `v` ... is the 2-call digest, SELECT SLEEP(?) FROM ... the 3-call one.
    by_calls = {(2 if "`v`" in text else 3): digest for text, digest in texts.items()}
    assert await calls(exp, "app") == {by_calls[3]: 3, by_calls[2]: 2, "other": 4 + 3 + 2}
    assert await exp.value(f"{HIST}_count", target="m", schema="app") == 14


async def test_a_full_digest_table_counts_the_overflow_row_under_other(
    start_exporter: Any,
) -> None:
    # Five rows: the server's own set-up fills them before the exporter starts, so every
    # later statement, the exporter's included, goes to the overflow row (NULL digest and
    # NULL schema) and counts in Performance_schema_digest_lost.
    server = MysqlServer(extra=("--performance-schema-digests-size=5",))
    try:
        await asyncio.to_thread(server.start)
        exp = await start_exporter(cfg(server))
        await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
        await exp.polls("mysql", "m", 2)
        lost = "sparki_mysql_statement_digests_lost_total"
        before = (await calls(exp, "(none)"))["other"], await exp.value(lost, target="m")
        assert before[1] is not None and before[1] > 0
        statements = [f"SELECT v{'+1' * i} FROM t WHERE id = 1" for i in range(6)]  # noqa: S608 - constants
        server.sql(*statements, database="app", user="app")
        await exp.polls("mysql", "m", 2)
        after = await calls(exp, "(none)"), await exp.value(lost, target="m")
        # Every statement the server could not give a row of its own is counted once,
        # under digest="other" of schema "(none)" (the overflow row has no schema).
        assert after[1] is not None and after[1] - before[1] >= len(statements)
        assert after[0]["other"] - before[0] == after[1] - before[1]
        assert await calls(exp, "app") == {}
        assert await exp.value("sparki_mysql_statement_digests", target="m") == 5
    finally:
        await asyncio.to_thread(server.destroy)


def server_sessions(server: MysqlServer) -> int:
    """The monitoring user's sessions as the server counts them (PROCESSLIST)."""
    out = server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'sparki'")
    return int(out.strip())


async def test_faults_never_leave_more_than_one_connection(
    mysql_private: MysqlServer, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg(mysql_private))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
    state = exp.runner("mysql", "m").state
    port = mysql_private.port

    async def one_connection(what: str) -> None:
        await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="m")
        await exp.polls("mysql", "m", 1)
        # The server closes abandoned connections when it sees them gone: wait for that.
        await asyncio.to_thread(
            wait_until, lambda: server_sessions(mysql_private) == 1, 15, what=what
        )
        assert process_sockets(port) == 1, what

    await one_connection("at start")
    assert mysql_private.proc is not None
    # A frozen server: connections are accepted by the kernel and nothing answers.
    os.kill(mysql_private.proc.pid, signal.SIGSTOP)
    try:
        await exp.polls("mysql", "m", 3)
        assert state.last_reason == Reason.TIMEOUT, state.last_error
        assert process_sockets(port) <= 1
    finally:
        os.kill(mysql_private.proc.pid, signal.SIGCONT)
    await one_connection("after a hang")

    # The exporter's session killed on the server (a DBA, wait_timeout).
    session = mysql_private.sql(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'sparki'"
    ).strip()
    mysql_private.sql(f"KILL CONNECTION {int(session)}")
    await exp.wait_value("sparki_up", 0, timeout=15, adapter="mysql", target="m")
    await one_connection("after its session was killed")

    await asyncio.to_thread(mysql_private.restart)
    await one_connection("after a restart")


# --- MySQL 8 paths, with fake rows ---------------------------------------------------
# Only MariaDB is installed here: what MySQL 8 names differently (SHOW REPLICA STATUS's
# Replica_*/Source columns) and has in addition (events_statements_histogram_by_digest)
# is checked with rows shaped as MySQL 8.0 documents them. Never run against a real
# MySQL 8 (docs/mysql.md says so).


def test_mysql8_replica_status_columns() -> None:
    row = {
        "Replica_IO_Running": "Yes",
        "Replica_SQL_Running": "No",
        "Seconds_Behind_Source": None,
        "Last_IO_Errno": 0,
        "Last_SQL_Errno": 1062,
        "Channel_Name": "",
    }
    ch = channel_of(row)
    assert (ch.name, ch.io_running, ch.sql_running, ch.lag) == ("default", True, False, None)
    assert (ch.io_error, ch.sql_error) == (False, True)
    assert (ch.io_errno, ch.sql_errno) == (0, 1062)
    named = channel_of({**row, "Channel_Name": "orders", "Replica_SQL_Running": "Yes",
                        "Seconds_Behind_Source": 7, "Last_SQL_Errno": 0})  # fmt: skip
    assert (named.name, named.sql_running, named.lag, named.sql_error) == ("orders", True, 7, False)
    # MariaDB's multi-source name, and the pre-8.0.22 Slave_*/Master columns.
    old = channel_of(
        {
            "Connection_name": "eu",
            "Slave_IO_Running": "Connecting",
            "Slave_SQL_Running": "Yes",
            "Seconds_Behind_Master": 3,
            "Last_IO_Errno": 2003,
            "Last_SQL_Errno": 0,
        }
    )
    assert (old.name, old.io_running, old.lag, old.io_errno) == ("eu", False, 3.0, 2003)


class FakeConn:
    """Answers the statements collector's queries from canned rows (asyncmy's cursor API)."""

    def __init__(self) -> None:
        self.digests: list[tuple[Any, ...]] = []
        self.histogram: list[tuple[Any, ...]] = []
        self.texts: dict[str, str] = {}

    def rows(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        if "events_statements_histogram_by_digest WHERE" in sql:
            return self.histogram
        if "information_schema.TABLES" in sql:
            return [(1,)]
        if "DIGEST_TEXT" in sql:
            return [("shop", d, self.texts[d]) for d in params if d in self.texts]
        return self.digests

    def cursor(self) -> Any:
        conn = self

        class Cursor:
            async def __aenter__(self) -> Any:
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

            async def execute(self, sql: str, params: Any = None) -> None:
                self.result = conn.rows(sql, params)

            async def fetchall(self) -> list[tuple[Any, ...]]:
                return self.result

        return Cursor()


async def test_mysql8_histogram_buckets_are_used_instead_of_the_estimate() -> None:
    from exporter.adapters.mysql.context import Context
    from exporter.adapters.mysql.statements import Collector, families

    ms = 10**9  # picoseconds in a millisecond
    conn = FakeConn()
    conn.texts = {"d1": "SELECT * FROM `orders` WHERE `id` = ?"}
    collector = Collector(MysqlConfig(name="m8"))

    async def poll(count: int, total_ms: float, buckets: dict[int, int]) -> Any:
        # SCHEMA_NAME, DIGEST, COUNT_STAR, SUM_TIMER_WAIT, MIN, MAX, FIRST_SEEN
        conn.digests = [("shop", "d1", count, round(total_ms * ms), 1 * ms, 300 * ms, "t0")]
        # SCHEMA_NAME, DIGEST, BUCKET_TIMER_HIGH, COUNT_BUCKET (per bucket, cumulative
        # over the digest's life like COUNT_STAR)
        conn.histogram = [("shop", "d1", high, n) for high, n in buckets.items()]
        status = {"uptime": "100", "performance_schema_digest_lost": "0"}
        ctx = Context(conn, status, 151, True, False, "8.0.36")
        return await collector.collect(ctx)

    await poll(10, 100.0, {1 * ms: 6, 20 * ms: 4})  # the baseline
    part = await poll(15, 100.0 + 2 * 0.9 + 18 + 2 * 180, {1 * ms: 8, 20 * ms: 5, 200 * ms: 2})
    assert part.real_buckets
    [(schema, snap)] = part.histograms
    cumulative = dict(zip(snap.bounds, itertools.accumulate(snap.counts), strict=False))
    # Each call lands in the bucket of its server bucket's upper edge: 1 ms -> le=0.001,
    # 20 ms -> le=0.025, 200 ms -> le=0.25; the lifetime [1 ms, 300 ms] spread the
    # estimator would use plays no part.
    assert (schema, cumulative[0.0005], cumulative[0.001]) == ("shop", 0, 2)
    assert (cumulative[0.01], cumulative[0.025], cumulative[0.1], cumulative[0.25]) == (2, 3, 3, 5)
    assert sum(snap.counts) == 5 and snap.sum == pytest.approx(0.3798)
    calls = {(s.schema, s.digest): s.calls for s in part.statements}
    assert calls == {("shop", "d1"): 5, ("shop", "other"): 0}
    exported = {f.name for f in families("m8", part)}
    assert "sparki_mysql_statement_duration_seconds" in exported

    # The histogram table truncated alone (its counts went down): that interval falls
    # back to the estimate, still 3 calls, none outside the digest's [min, max].
    part = await poll(18, 479.8 + 30, {1 * ms: 1})
    [(_, snap)] = part.histograms
    assert sum(snap.counts) == 8 and snap.counts[0] == 0
    # The two tables read a moment apart: 4 calls in the summary, 2 in the buckets yet.
    # The buckets' shape, scaled to the summary's count, so _count equals the calls.
    before = snap.counts
    part = await poll(22, 509.8 + 4 * 20, {1 * ms: 1, 20 * ms: 2})
    [(_, snap)] = part.histograms
    added = [now - then for now, then in zip(snap.counts, before, strict=True)]
    assert added[5] == 4 and sum(added) == 4  # two calls of 20 ms, counted as the four
    assert {(s.schema, s.digest): s.calls for s in part.statements}[("shop", "d1")] == 12


def test_rescaled_buckets_keep_their_shape_and_total() -> None:
    assert rescale([2, 0, 2], 8) == [4, 0, 4]
    assert rescale([1, 1, 1], 2) == [1, 0, 1]
    assert rescale([0, 3], 1) == [0, 1]
