"""The Memcached adapter against real memcached 1.6 nodes (tests/fixtures_memcached.py).

What a team replacing memcached_exporter relies on: per-node series of a multi-node
target that equal the servers' own counters, a canary that measures set/get/delete and
leaves nothing behind, one dead or hung node never hiding the others, a restart that
resets counters without breaking the poll, ASCII authentication, and collectors that
can be switched off.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
from fixtures_core import HungServer, free_port, process_sockets, timed, wait_until
from fixtures_memcached import MemcachedServer

from exporter import config as config_mod
from exporter.adapters.memcached.config import from_env

FAST = {"poll_interval": "1s", "poll_timeout": "0.9s"}


def cfg(*targets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**FAST, **extra, "memcached": list(targets)}


async def node_values(exp: Any, name: str, target: str) -> dict[str, float]:
    return {s.labels["node"]: s.value for s in await exp.samples(name, target=target)}


async def test_per_node_series_equal_the_servers_own_stats(
    memcached_factory: Any, start_exporter: Any
) -> None:
    a, b = memcached_factory(memory_mb=16, max_connections=50), memcached_factory(memory_mb=32)
    for i in range(5):
        assert a.set(f"user:{i}", b"x" * 100) == b"STORED\r\n"
    for key in ("user:0", "user:1", "user:2", "nope:1", "nope:2"):
        a.get(key)
    target = {
        "name": "sessions",
        "nodes": [{"address": a.address, "name": "cache-a"}, b.address],
    }
    exp = await start_exporter(cfg(target))
    await exp.wait_value("sparki_up", 1, adapter="memcached", target="sessions")
    await exp.polls("memcached", "sessions", 2)

    # Node labels: the configured name, else the position in the list; never an address.
    up = await node_values(exp, "sparki_memcached_node_up", "sessions")
    assert up == {"cache-a": 1, "1": 1}
    text = await exp.scrape()
    assert str(a.port) not in text and str(b.port) not in text

    limits = await node_values(exp, "sparki_memcached_memory_limit_bytes", "sessions")
    assert limits == {"cache-a": 16 * 2**20, "1": 32 * 2**20}
    maxconns = await node_values(exp, "sparki_memcached_max_connections", "sessions")
    assert maxconns["cache-a"] == 50 == int(a.stats("settings")["maxconns"])
    # The canary deletes its key, so only the test's five items are stored; its gets
    # always hit, so the misses are the test's two.
    items = await node_values(exp, "sparki_memcached_items", "sessions")
    assert items == {"cache-a": 5, "1": 0}
    misses = await node_values(exp, "sparki_memcached_get_misses_total", "sessions")
    assert misses["cache-a"] == 2 == int(a.stats()["get_misses"])
    used = await node_values(exp, "sparki_memcached_memory_used_bytes", "sessions")
    assert used["cache-a"] == int(a.stats()["bytes"]) > 500
    assert used["1"] == 0
    sets = await exp.value(
        "sparki_memcached_commands_total", target="sessions", node="cache-a", command="set"
    )
    assert sets is not None and sets >= 5 + 2  # the test's five, the canary's one a poll
    slab = await exp.samples("sparki_memcached_slab_chunks", target="sessions", node="cache-a")
    used_chunks = sum(s.value for s in slab if s.labels["state"] == "used")
    assert used_chunks == 5
    assert await exp.value("sparki_memcached_evictions_enabled", node="cache-a") == 1
    assert await exp.value("sparki_memcached_auth_enabled", node="cache-a") == 0
    success = await exp.samples("sparki_collector_success", adapter="memcached")
    assert {s.labels["collector"]: s.value for s in success} == {
        "stats": 1,
        "slabs": 1,
        "settings": 1,
        "canary": 1,
    }


async def test_canary_times_each_operation_and_leaves_nothing_behind(
    memcached_factory: Any, start_exporter: Any
) -> None:
    node = memcached_factory()
    exp = await start_exporter(cfg(node.target("canary")))
    await exp.wait_value("sparki_up", 1, adapter="memcached", target="canary")
    await exp.polls("memcached", "canary", 3)
    for op in ("set", "get", "delete"):
        count = await exp.value(
            "sparki_memcached_canary_duration_seconds_count", target="canary", operation=op
        )
        attempts = await exp.value(
            "sparki_memcached_canary_operations_total", target="canary", operation=op
        )
        assert count is not None and count >= 3
        assert attempts is not None and attempts >= count
        # The thresholds (5 ms, 10 ms) are bucket edges.
        for le in ("0.005", "0.01"):
            assert await exp.samples(
                "sparki_memcached_canary_duration_seconds_bucket", operation=op, le=le
            )
    assert not await exp.samples("sparki_memcached_canary_errors_total", target="canary")
    # The first round trip of each operation on the connection is counted, not timed
    # (cold paths a pooled client never sees); every later one is timed.
    fams = await exp.families()
    for op in ("set", "get", "delete"):
        [timed] = [
            s.value
            for s in fams["sparki_memcached_canary_duration_seconds"].samples
            if s.name.endswith("_count") and s.labels["operation"] == op
        ]
        [attempted] = [
            s.value
            for s in fams["sparki_memcached_canary_operations"].samples
            if s.name.endswith("_total") and s.labels["operation"] == op
        ]
        assert attempted == timed + 1, op
    await exp.exporter.stop()
    assert node.keys() == []
    assert int(node.stats()["curr_items"]) == 0
    stats = node.stats()
    assert int(stats["delete_hits"]) == int(stats["cmd_set"]) > 0  # every set was deleted


async def test_a_full_node_without_evictions_fails_the_canary_with_a_reason(
    memcached_factory: Any, start_exporter: Any
) -> None:
    node = memcached_factory(memory_mb=2, no_evictions=True)
    # Fill every small slab class (a class gets its first page even past the limit), so
    # the canary's item, whatever its class, finds no room.
    filled = node.fill(range(8, 200, 8))
    exp = await start_exporter(cfg(node.target("full")))
    await exp.wait_value("sparki_up", 1, adapter="memcached", target="full")
    await exp.polls("memcached", "full", 2)

    async def failed() -> float | None:
        return await exp.value(
            "sparki_memcached_canary_errors_total",
            target="full",
            operation="set",
            reason="server_error",
        )

    await exp.wait_for(failed)
    # The node still answers: it is up, its collectors (canary included) did their job,
    # and the failure is the canary's finding, counted with its reason.
    assert await exp.value("sparki_memcached_node_up", target="full") == 1
    assert await exp.value("sparki_memcached_evictions_enabled", target="full") == 0
    assert await exp.value("sparki_collector_success", target="full", collector="canary") == 1
    store_refused = await exp.value("sparki_memcached_store_no_memory_total", target="full")
    assert store_refused is not None and store_refused >= 1
    assert int(node.stats()["curr_items"]) == filled  # the canary added nothing


async def test_a_dead_and_a_hung_node_never_hide_the_others(
    memcached_nodes: list[MemcachedServer],
    hung_server: HungServer,
    start_exporter: Any,
    captured_logs: Any,
) -> None:
    dead = free_port()
    target = {
        "name": "ring",
        "nodes": [
            memcached_nodes[0].address,
            {"address": f"127.0.0.1:{dead}", "name": "dead"},
            {"address": f"127.0.0.1:{hung_server.port}", "name": "hung"},
        ],
    }
    exp = await start_exporter(cfg(target))
    await exp.wait_value("sparki_up", 1, adapter="memcached", target="ring")
    await exp.polls("memcached", "ring", 2)
    state = exp.runner("memcached", "ring").state
    # The hung node costs the poll deadline, not more.
    assert state.last_duration is not None and state.last_duration < 0.9 + 0.5
    assert await node_values(exp, "sparki_memcached_node_up", "ring") == {
        "0": 1,
        "dead": 0,
        "hung": 0,
    }
    # Only the answering node has server series.
    assert set(await node_values(exp, "sparki_memcached_items", "ring")) == {"0"}
    for _ in range(3):
        with timed() as t:
            text = await exp.scrape()
        assert t[0] < 1.0
    assert str(dead) not in text and str(hung_server.port) not in text
    logs = captured_logs()
    failed = [ln for ln in logs.splitlines() if "memcached node poll failed" in ln]
    assert any("node=dead" in ln and "reason=connect" in ln for ln in failed), failed
    assert any("node=hung" in ln and "reason=timeout" in ln for ln in failed), failed
    assert str(dead) not in "\n".join(failed) and "127.0.0.1" not in "\n".join(failed)


async def test_no_node_answering_fails_the_poll_with_the_reason(start_exporter: Any) -> None:
    target = {"name": "gone", "nodes": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    exp = await start_exporter(cfg(target))
    state = exp.runner("memcached", "gone").state
    await exp.wait_for(lambda: state.polled, 10)
    assert await exp.value("sparki_up", adapter="memcached", target="gone") == 0
    reasons = await exp.samples("sparki_last_poll_error_reason", target="gone")
    assert [s.labels["reason"] for s in reasons] == ["connect"]
    assert state.last_error == "node 0: cannot connect: connection refused"
    # The failed poll still says which nodes are down.
    assert await node_values(exp, "sparki_memcached_node_up", "gone") == {"0": 0, "1": 0}


async def test_a_restart_mid_run_resets_the_raw_counters_and_the_poll_goes_on(
    memcached_factory: Any, start_exporter: Any, captured_logs: Any
) -> None:
    node = memcached_factory()
    for i in range(20):
        node.set(f"k{i}", b"v")
    exp = await start_exporter(cfg(node.target("restart")))
    await exp.wait_value("sparki_up", 1, adapter="memcached", target="restart")
    await exp.polls("memcached", "restart", 2)
    before = await exp.value("sparki_memcached_items_stored_total", target="restart")
    assert before is not None and before >= 20

    node.restart()  # the same port, an empty server, counters from zero

    async def restarted() -> bool:
        stored = await exp.value("sparki_memcached_items_stored_total", target="restart")
        return stored is not None and stored < 20

    await exp.wait_for(restarted, 15)
    assert await exp.value("sparki_up", adapter="memcached", target="restart") == 1
    assert await exp.value("sparki_memcached_node_up", target="restart") == 1
    assert await exp.value("sparki_memcached_items", target="restart") == 0
    # The exporter's own canary counters are not the server's: they never go back.
    ops = await exp.value(
        "sparki_memcached_canary_operations_total", target="restart", operation="set"
    )
    assert ops is not None and ops >= 3
    lines = [ln for ln in captured_logs().splitlines() if "node restarted" in ln]
    assert len(lines) == 1, lines


async def test_ascii_auth_right_and_missing_credentials(
    memcached_auth: MemcachedServer, start_exporter: Any
) -> None:
    right = memcached_auth.target("right")
    missing = {"name": "missing", "nodes": [memcached_auth.address]}
    exp = await start_exporter(cfg(right, missing))
    await exp.wait_value("sparki_up", 1, adapter="memcached", target="right")
    assert await exp.value("sparki_memcached_auth_enabled", target="right") == 1
    state = exp.runner("memcached", "missing").state
    await exp.wait_for(lambda: state.polled, 10)
    assert state.last_reason == "auth"
    assert "requires authentication" in (state.last_error or "")


async def test_collectors_switched_off_are_not_run_nor_exported(
    memcached_server: MemcachedServer, start_exporter: Any
) -> None:
    target = memcached_server.target("lean", collectors={"canary": False})
    exp = await start_exporter(cfg(target, collectors={"memcached": {"slabs": False}}))
    await exp.wait_value("sparki_up", 1, adapter="memcached", target="lean")
    await exp.polls("memcached", "lean", 1)
    fams = await exp.families()
    assert "sparki_memcached_items" in fams
    assert "sparki_memcached_slab_chunks" not in fams
    assert "sparki_memcached_canary_operations" not in fams
    success = await exp.samples("sparki_collector_success", target="lean")
    assert {s.labels["collector"] for s in success} == {"stats", "settings"}


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ({"nodes": []}, "at least 1"),
        ({"nodes": ["x:0"]}, "port"),
        ({"nodes": ["fe80::1:11211"]}, "[addr]:port"),
        ({"nodes": ["a:1", {"address": "b:1", "name": "0"}]}, "unique"),
        ({"nodes": ["a:1"], "username": "u"}, "both username and password"),
        ({"nodes": ["a:1"], "canary_key_prefix": "has space"}, "without spaces"),
        ({"nodes": ["a:1"], "canary_ttl": "2h"}, "too long"),
        ({"nodes": ["a:1"], "collectors": {"slab": False}}, "did you mean 'slabs'"),
    ],
)
def test_config_errors_are_clear(target: dict[str, Any], problem: str) -> None:
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(cfg({"name": "t", **target}), {})
    assert problem in str(err.value)


def test_from_env_and_default_ports() -> None:
    env = {
        "MEMCACHED_SERVERS": "cache-1:11211, cache-2 ,[::1]:11212",
        "MEMCACHED_USERNAME": "u",
        "MEMCACHED_PASSWORD": "p",
    }
    targets = from_env(env)
    assert targets == [
        {
            "name": "memcached",
            "nodes": ["cache-1:11211", "cache-2", "[::1]:11212"],
            "username": "u",
            "password": "p",
        }
    ]
    config = config_mod.validate({"memcached": targets}, {})
    assert [label for label, _ in config.memcached[0].node_list()] == ["0", "1", "2"]
    assert from_env({}) == []


async def test_faults_never_leave_more_than_one_connection_per_node(
    memcached_factory: Any, start_exporter: Any
) -> None:
    a, b = memcached_factory(), memcached_factory()
    # What `stats` reports with only the checker's own connection open.
    base = {n.port: int(n.stats()["curr_connections"]) for n in (a, b)}

    def exporter_connections(node: MemcachedServer) -> int:
        return int(node.stats()["curr_connections"]) - base[node.port]

    target = {"name": "ring", "nodes": [{"address": a.address, "name": "a"}, b.address]}
    exp = await start_exporter(cfg(target))
    await exp.wait_value("sparki_up", 1, adapter="memcached", target="ring")

    async def one_per_node(what: str) -> None:
        await exp.wait_value("sparki_memcached_node_up", 1, timeout=15, target="ring", node="a")
        await exp.polls("memcached", "ring", 1)
        for node in (a, b):
            # The server drops abandoned connections when it sees them closed.
            await asyncio.to_thread(
                wait_until, lambda n=node: exporter_connections(n) == 1, 10, what=what
            )
            assert process_sockets(node.port) == 1, what

    await one_per_node("at start")
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGSTOP)  # a frozen node: connects succeed, nothing answers
    try:
        await exp.wait_value("sparki_memcached_node_up", 0, timeout=15, target="ring", node="a")
        await exp.polls("memcached", "ring", 2)
        assert await exp.value("sparki_memcached_node_up", target="ring", node="a") == 0
        assert process_sockets(a.port) <= 1
        assert exporter_connections(b) == 1 and process_sockets(b.port) == 1
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    await one_per_node("after a hang")

    await asyncio.to_thread(a.restart)
    await one_per_node("after a restart")
