"""Redis collectors against real servers (Redis 7 and Valkey 8, fixtures_redis.py):
replication, persistence, clients against maxclients, errorstats, the slow log, and
switching a collector off or losing it to an ACL.

Tests that change a server's settings use private servers on free ports.
"""

from __future__ import annotations

import shutil
import socket
from typing import Any

import pytest
import redis
from fixtures_redis import AclServer, RedisServer

REDIS_ALL_SERVERS = True
FAST = {"poll_interval": "1s", "poll_timeout": "0.8s"}


def cfg(*targets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**FAST, "redis": list(targets), **extra}


async def wait_value(
    exp: Any, name: str, want: Any, timeout: float = 20.0, **labels: str
) -> float | None:
    """Wait until the sample exists and ``want(value)`` holds; return the value."""

    async def check() -> bool:
        value = await exp.value(name, **labels)
        return value is not None and bool(want(value))

    await exp.wait_for(check, timeout)
    return await exp.value(name, **labels)


async def success(exp: Any, target: str, collector: str) -> float | None:
    return await exp.value(
        "sparki_collector_success", adapter="redis", target=target, collector=collector
    )


# --- replication ----------------------------------------------------------------------


async def test_replica_link_up_then_down_when_the_primary_dies(
    redis_factory: Any, start_exporter: Any
) -> None:
    primary: RedisServer = redis_factory()
    replica: RedisServer = redis_factory()
    with replica.client() as c:
        c.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
    exp = await start_exporter(cfg(primary.target("primary"), replica.target("replica")))

    await wait_value(exp, "sparki_redis_replication_link_up", lambda v: v == 1, target="replica")
    info = await exp.samples("sparki_redis_server_info", target="replica")
    assert [s.labels["role"] for s in info] == ["replica"]
    info = await exp.samples("sparki_redis_server_info", target="primary")
    assert [s.labels["role"] for s in info] == ["primary"]
    # The primary has no link of its own; it sees one replica, with a lag series.
    assert await exp.value("sparki_redis_replication_link_up", target="primary") is None
    await wait_value(exp, "sparki_redis_connected_replicas", lambda v: v == 1, target="primary")
    lag = await exp.samples("sparki_redis_replica_lag_bytes", target="primary")
    assert len(lag) == 1 and lag[0].labels["replica"] == "slave0"
    text = await exp.scrape()  # addresses never become label values
    assert f":{replica.port}" not in text and f":{primary.port}" not in text
    assert lag[0].value >= 0
    assert await exp.value("sparki_redis_replication_last_io_seconds", target="replica") >= 0

    # Writes on the primary move its offset; the replica's offset follows.
    with primary.client() as c:
        for i in range(50):
            c.set(f"k{i}", "x" * 100)
        offset = float(c.info("replication")["master_repl_offset"])
    await wait_value(
        exp, "sparki_redis_replication_offset_bytes", lambda v: v >= offset, target="replica"
    )

    primary.kill()
    await wait_value(exp, "sparki_redis_replication_link_up", lambda v: v == 0, target="replica")
    await wait_value(
        exp, "sparki_redis_replication_link_down_seconds", lambda v: v >= 0, target="replica"
    )
    assert await exp.value("sparki_redis_replication_last_io_seconds", target="replica") is None
    assert await exp.value("sparki_up", adapter="redis", target="replica") == 1


# --- persistence ----------------------------------------------------------------------


async def test_failed_bgsave_shows_err_and_recovers(
    redis_factory: Any, start_exporter: Any, tmp_path: Any
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    server: RedisServer = redis_factory(settings=[f"dir {gone}", "enable-protected-configs yes"])
    exp = await start_exporter(cfg(server.target("save")))
    await wait_value(exp, "sparki_redis_rdb_last_bgsave_ok", lambda v: v == 1, target="save")
    assert await exp.value("sparki_redis_aof_enabled", target="save") == 0
    # AOF off: no AOF write status to judge.
    assert await exp.value("sparki_redis_aof_last_write_ok", target="save") is None
    with server.client() as c:
        c.set("a", "1")
        c.set("b", "2")
    await wait_value(
        exp, "sparki_redis_rdb_changes_since_last_save", lambda v: v >= 2, target="save"
    )

    # The data directory disappears under the server: the next BGSAVE cannot write.
    shutil.rmtree(gone)
    with server.client() as c:
        c.bgsave()
    await wait_value(exp, "sparki_redis_rdb_last_bgsave_ok", lambda v: v == 0, target="save")
    assert await exp.value("sparki_up", adapter="redis", target="save") == 1

    # A writable directory again: the next save succeeds and stamps its time.
    with server.client() as c:
        c.config_set("dir", str(tmp_path))
        c.bgsave()
    await wait_value(exp, "sparki_redis_rdb_last_bgsave_ok", lambda v: v == 1, target="save")
    with server.client() as c:
        saved = float(c.info("persistence")["rdb_last_save_time"])
    await wait_value(
        exp,
        "sparki_redis_rdb_last_save_timestamp_seconds",
        lambda v: v == saved,
        target="save",
    )


# --- clients --------------------------------------------------------------------------


async def test_clients_against_a_low_maxclients_and_rejections(
    redis_private: RedisServer, start_exporter: Any
) -> None:
    with redis_private.client() as c:
        c.config_set("maxclients", "10")
    exp = await start_exporter(cfg(redis_private.target("mc")))
    await wait_value(exp, "sparki_redis_max_clients", lambda v: v == 10, target="mc")

    held = [redis_private.client() for _ in range(6)]
    try:
        for c in held:
            c.ping()
        # The six, the exporter's own connection: at least 7 of 10.
        await wait_value(exp, "sparki_redis_connected_clients", lambda v: v >= 7, target="mc")
        assert await exp.value("sparki_redis_rejected_connections_total", target="mc") == 0

        extra = [redis_private.client() for _ in range(6)]
        refused = 0
        for c in extra:
            try:
                c.ping()
            except redis.RedisError:
                refused += 1
        assert refused >= 1
        await wait_value(
            exp, "sparki_redis_rejected_connections_total", lambda v: v >= refused, target="mc"
        )
        connected = await exp.value("sparki_redis_connected_clients", target="mc")
        assert connected is not None and connected <= 10
        for c in extra:
            c.close()
    finally:
        for c in held:
            c.close()


async def test_blocked_clients_are_counted(redis_private: RedisServer, start_exporter: Any) -> None:
    exp = await start_exporter(cfg(redis_private.target("blk")))
    await wait_value(exp, "sparki_redis_blocked_clients", lambda v: v == 0, target="blk")
    # A blocking pop on a raw connection of its own, its reply never awaited.
    with socket.create_connection(("127.0.0.1", redis_private.port), timeout=5) as sock:
        sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$7\r\nnothing\r\n$2\r\n30\r\n")
        await wait_value(exp, "sparki_redis_blocked_clients", lambda v: v == 1, target="blk")


# --- errorstats and the slow log -----------------------------------------------------------


async def test_error_replies_raise_errorstats(
    redis_private: RedisServer, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg(redis_private.target("err")))
    await wait_value(exp, "sparki_redis_error_replies_total", lambda v: v >= 0, target="err")
    before = await exp.value("sparki_redis_errors_total", target="err", prefix="WRONGTYPE")
    assert before is None  # no such error yet, so no series
    with redis_private.client() as c:
        c.set("s", "x")
        for _ in range(3):
            with pytest.raises(redis.ResponseError):
                c.lpush("s", "y")
        with pytest.raises(redis.ResponseError):
            c.execute_command("NO-SUCH-COMMAND")
    await wait_value(
        exp, "sparki_redis_errors_total", lambda v: v == 3, target="err", prefix="WRONGTYPE"
    )
    assert (await exp.value("sparki_redis_errors_total", target="err", prefix="ERR") or 0) >= 1
    assert (await exp.value("sparki_redis_error_replies_total", target="err") or 0) >= 4


async def test_error_prefixes_are_bounded(redis_private: RedisServer, start_exporter: Any) -> None:
    exp = await start_exporter(cfg(redis_private.target("few", errorstats_max_prefixes=1)))
    with redis_private.client() as c:
        with pytest.raises(redis.ResponseError):
            c.execute_command("NO-SUCH-COMMAND")
    await wait_value(exp, "sparki_redis_errors_total", lambda v: v >= 1, target="few", prefix="ERR")
    with redis_private.client() as c:
        c.set("s", "x")
        with pytest.raises(redis.ResponseError):
            c.lpush("s", "y")
    await wait_value(
        exp, "sparki_redis_errors_total", lambda v: v >= 1, target="few", prefix="other"
    )
    prefixes = {s.labels["prefix"] for s in await exp.samples("sparki_redis_errors_total")}
    assert prefixes == {"ERR", "other"}


async def test_slowlog_growth(redis_private: RedisServer, start_exporter: Any) -> None:
    exp = await start_exporter(cfg(redis_private.target("slow")))
    await wait_value(exp, "sparki_redis_slowlog_length", lambda v: v == 0, target="slow")
    assert await exp.value("sparki_redis_slowlog_entries_total", target="slow") == 0
    with redis_private.client() as c:
        c.config_set("slowlog-log-slower-than", "0")  # every command is slow
        for i in range(20):
            c.set(f"k{i}", "v")
    first = await wait_value(
        exp, "sparki_redis_slowlog_entries_total", lambda v: v >= 20, target="slow"
    )
    assert await exp.value("sparki_redis_slowlog_length", target="slow") >= 20
    # SLOWLOG RESET empties the log; the count of entries logged never goes back.
    with redis_private.client() as c:
        c.slowlog_reset()
        c.config_set("slowlog-log-slower-than", "10000000")
    await exp.polls("redis", "slow", 2)
    after = await exp.value("sparki_redis_slowlog_entries_total", target="slow")
    assert first is not None and after is not None and after >= first
    assert await exp.value("sparki_redis_slowlog_length", target="slow") <= 3


# --- switching and ACLs -----------------------------------------------------------------


async def test_a_collector_switched_off_removes_its_families(
    redis_server: RedisServer, start_exporter: Any
) -> None:
    exp = await start_exporter(
        cfg(
            redis_server.target("noslow", collectors={"slowlog": False}),
            redis_server.target("all"),
        )
    )
    await wait_value(exp, "sparki_redis_slowlog_length", lambda v: v >= 0, target="all")
    await wait_value(exp, "sparki_redis_memory_used_bytes", lambda v: v > 0, target="noslow")
    families = await exp.families()
    assert "sparki_redis_slowlog_length" in families  # the other target still has it
    assert await exp.samples("sparki_redis_slowlog_length", target="noslow") == []
    assert await exp.samples("sparki_redis_slowlog_entries_total", target="noslow") == []
    assert await success(exp, "noslow", "slowlog") is None
    assert await success(exp, "noslow", "memory") == 1
    assert await success(exp, "all", "slowlog") == 1


async def test_a_collector_switched_off_for_every_target(
    redis_server: RedisServer, start_exporter: Any
) -> None:
    exp = await start_exporter(
        cfg(redis_server.target("g"), collectors={"redis": {"replication": False}})
    )
    await wait_value(exp, "sparki_redis_memory_used_bytes", lambda v: v > 0, target="g")
    assert await exp.samples("sparki_redis_connected_replicas", target="g") == []
    assert await success(exp, "g", "replication") is None


async def test_a_collector_refused_by_the_acl_degrades_alone(
    redis_acl: AclServer, start_exporter: Any, captured_logs: Any
) -> None:
    # The monitoring user has +info +config|get ... but no +slowlog.
    exp = await start_exporter(cfg(redis_acl.target("acl")))
    await wait_value(exp, "sparki_redis_memory_used_bytes", lambda v: v > 0, target="acl")
    await exp.polls("redis", "acl", 3)
    assert await success(exp, "acl", "slowlog") == 0
    assert await exp.value("sparki_up", adapter="redis", target="acl") == 1
    assert await exp.samples("sparki_redis_slowlog_length", target="acl") == []
    for other in ("memory", "clients", "stats", "replication", "persistence", "errorstats"):
        assert await success(exp, "acl", other) == 1, other
    assert await exp.value("sparki_redis_rdb_last_bgsave_ok", target="acl") == 1
    lines = [
        ln
        for ln in captured_logs().splitlines()
        if "collector failed" in ln and "collector=slowlog" in ln
    ]
    assert len(lines) == 1, lines  # once per change, not once per poll
    # The server's own reply names the command to grant.
    assert "no permissions" in lines[0] and "slowlog|len" in lines[0], lines[0]
    assert "switch the collector off" in lines[0]
    assert AclServer.PASSWORD not in captured_logs()

    # Granting it is picked up without a restart.
    with redis_acl.server.client() as c:
        c.execute_command("ACL", "SETUSER", AclServer.USER, "+slowlog")
    assert await wait_value(exp, "sparki_redis_slowlog_length", lambda v: v >= 0, target="acl") >= 0
    await exp.wait_for(lambda: success(exp, "acl", "slowlog"), 15)


# --- cluster ----------------------------------------------------------------------------


async def test_cluster_nodes_carry_node_and_role_on_collector_families(
    redis_cluster: Any, start_exporter: Any
) -> None:
    replica = redis_cluster.add_replica(of=0)
    primary_id = redis_cluster.nodes[0].node_id()[:8]
    replica_id = replica.node_id()[:8]
    exp = await start_exporter(cfg(redis_cluster.target("cl", cluster=True)))
    await wait_value(
        exp,
        "sparki_redis_replication_link_up",
        lambda v: v == 1,
        target="cl",
        node=replica_id,
        role="replica",
    )
    await wait_value(
        exp,
        "sparki_redis_connected_replicas",
        lambda v: v == 1,
        target="cl",
        node=primary_id,
        role="primary",
    )
    # Per node, with node and role: four nodes, four memory series.
    memory = await exp.samples("sparki_redis_memory_used_bytes", target="cl")
    assert {s.labels["node"] for s in memory} >= {primary_id, replica_id}
    assert all(s.labels["role"] in ("primary", "replica") for s in memory)
    lag = await exp.samples("sparki_redis_replica_lag_bytes", target="cl", node=primary_id)
    assert [s.labels["replica"] for s in lag] == ["slave0"]
    # One success series per collector for the whole target.
    runs = await exp.samples("sparki_collector_success", adapter="redis", target="cl")
    from exporter.adapters.redis.catalog import COLLECTORS

    assert len(runs) == len({s.labels["collector"] for s in runs}) == len(COLLECTORS)
    assert all(s.value == 1 for s in runs), runs
    text = await exp.scrape()
    for node in [*redis_cluster.nodes, replica]:
        assert f":{node.port}" not in text
