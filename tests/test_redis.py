"""Redis adapter against real servers: Debian's Redis 7.0 and Valkey 8 (fixtures_redis.py).

``REDIS_ALL_SERVERS`` runs every test that uses a server fixture against both;
``SPARKI_REDIS_SERVERS=redis`` (or ``valkey``) picks one.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import socket
import subprocess
import time
from typing import Any

import pytest
import redis
from fixtures_core import free_port, timed
from fixtures_redis import AclServer, RedisServer
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from test_adapters import contract_of

from exporter import config as config_mod
from exporter.adapter import PollError, Reason
from exporter.adapters.redis import capability as redis_capability
from exporter.adapters.redis import discovery, latency
from exporter.adapters.redis import target as adapter
from exporter.metrics import format_value

REDIS_ALL_SERVERS = True
FAST = {"poll_interval": "1s", "poll_timeout": "0.8s"}
HIST = "sparki_redis_command_duration_seconds"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
BOUNDS = [format_value(b) for b in latency.COMMAND_BUCKETS] + ["+Inf"]

# name -> (type, label names) for every Redis row of the metric contract: one table
# for every adapter, in test_adapters.py.
CONTRACT = contract_of("redis")
COMMON = {
    "sparki_up": ("gauge", {"adapter", "target"}),
    "sparki_poll_duration_seconds": ("gauge", {"adapter", "target"}),
    "sparki_last_poll_success_timestamp_seconds": ("gauge", {"adapter", "target"}),
    "sparki_poll_errors": ("counter", {"adapter", "target", "reason"}),
    "sparki_exporter_build_info": ("gauge", {"version"}),
    "sparki_capability": ("gauge", {"adapter", "target", "capability"}),
}
# Busy-loops on the server clock for ARGV[1] microseconds: a command that takes that long.
SLOW_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
while true do
  local n = redis.call('TIME')
  if n[1] * 1000000 + n[2] - start >= tonumber(ARGV[1]) then break end
end
return 1
"""


def cfg(*targets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**FAST, "redis": list(targets), **extra}


async def up(exp: Any, name: str) -> float | None:
    return await exp.value("sparki_up", adapter="redis", target=name)


async def wait_up(exp: Any, name: str, want: float = 1.0, timeout: float = 20.0) -> None:
    async def check() -> bool:
        return await up(exp, name) == want

    await exp.wait_for(check, timeout)


async def capability(exp: Any, name: str, cap: str) -> float | None:
    return await exp.value("sparki_capability", adapter="redis", target=name, capability=cap)


async def histogram(exp: Any, target: str, cmd: str, **labels: str) -> dict[str, float]:
    """le -> cumulative count, plus "count" and "sum", for one command's series."""
    out: dict[str, float] = {}
    for s in await exp.samples(f"{HIST}_bucket", target=target, cmd=cmd, **labels):
        out[s.labels["le"]] = s.value
    count = await exp.value(f"{HIST}_count", target=target, cmd=cmd, **labels)
    total = await exp.value(f"{HIST}_sum", target=target, cmd=cmd, **labels)
    if count is not None:
        out["count"], out["sum"] = count, total
    return out


async def all_histogram_values(exp: Any, target: str) -> dict[tuple[Any, ...], float]:
    """Every sample of the command histogram of a target, keyed by name and labels."""
    fams = await exp.families()
    fam = fams.get(HIST)
    if fam is None:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in fam.samples
        if s.labels.get("target") == target
    }


def assert_never_decreased(before: dict[Any, float], after: dict[Any, float]) -> None:
    for key, value in before.items():
        if key in after:
            assert after[key] >= value, f"{key} decreased: {value} -> {after[key]}"


def assert_cumulative_without_gaps(buckets: dict[str, float]) -> None:
    assert [le for le in BOUNDS if le in buckets] == BOUNDS, "a bucket bound is missing"
    values = [buckets[le] for le in BOUNDS]
    assert values == sorted(values), f"buckets not cumulative: {values}"
    assert buckets["+Inf"] == buckets["count"]


def run_slow(server: RedisServer, usec: int, times: int) -> None:
    with server.client() as c:
        for _ in range(times):
            c.eval(SLOW_SCRIPT, 0, usec)


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


# --- the contract ------------------------------------------------------------------------


async def test_every_contract_metric_with_type_labels_and_units(
    redis_server: RedisServer, start_exporter: Any
) -> None:
    with redis_server.client() as c:
        c.set("contract:key", "v")
        c.get("contract:key")
    exp = await start_exporter(cfg(redis_server.target("contract")))
    await wait_up(exp, "contract")
    with redis_server.client() as c:
        for _ in range(20):
            c.get("contract:key")
    await exp.polls("redis", "contract", 2)

    fams = await exp.families()
    for name, (mtype, labels) in {**CONTRACT, **COMMON}.items():
        assert name in fams, f"{name} missing"
        fam = fams[name]
        assert fam.type == mtype, f"{name} is {fam.type}, want {mtype}"
        mine = [s for s in fam.samples if s.labels.get("adapter", "redis") == "redis"]
        assert mine, f"{name} has no samples"
        for sample in mine:
            got = set(sample.labels) - {"le"}
            assert got == labels, f"{sample.name} labels {got} != {labels}"
            if mtype == "counter":
                assert sample.name.endswith("_total") or sample.name.endswith("_created")
    for name in CONTRACT:  # units are in the names, in base units
        assert not re.search(r"_(milli|micro)seconds|_kilobytes|_megabytes", name)

    probe_bounds = {
        s.labels["le"]
        for s in fams["sparki_redis_probe_duration_seconds"].samples
        if "le" in s.labels
    }
    assert {"0.005", "0.01"} <= probe_bounds
    get = await histogram(exp, "contract", "get")
    assert_cumulative_without_gaps(get)
    assert {"0.005", "0.01", "0.008454", "0.004227"} <= set(get)
    # maxmemory is unset on the shared server: exported as 0, never +Inf or absent.
    assert await exp.value("sparki_redis_memory_max_bytes", target="contract") == 0
    assert await exp.value("sparki_redis_memory_used_bytes", target="contract") > 0
    assert await capability(exp, "contract", "latency_histogram") == 1
    assert await capability(exp, "contract", "config") == 1
    info = await exp.samples("sparki_redis_server_info", target="contract")
    assert info[0].labels["role"] == "primary"

    text = await exp.scrape()
    check = promtool_check(text)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "redis" not in check.stdout.lower(), check.stdout  # no lint about our families
    _, _, body = await exp.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    om = {f.name: f for f in om_parse(body.decode())}
    assert om[HIST].type == "histogram"


async def test_server_info_names_the_server_and_its_own_version(
    redis_server: RedisServer, redis_kind: str, start_exporter: Any
) -> None:
    """Valkey reports ``redis_version:7.2.4`` for client compatibility, beside its own
    ``valkey_version`` and ``server_name:valkey``: the info series must say valkey and
    carry Valkey's real version, or a fleet of Valkey 8 reads as Redis 7.2."""
    with redis_server.client() as c:
        server_info = c.info("server")
    exp = await start_exporter(cfg(redis_server.target("who")))
    await wait_up(exp, "who")
    info = await exp.samples("sparki_redis_server_info", target="who")
    assert len(info) == 1 and info[0].value == 1
    labels = info[0].labels
    assert labels["server"] == redis_kind
    if redis_kind == "valkey":
        assert server_info["server_name"] == "valkey"
        assert labels["version"] == server_info["valkey_version"]
        assert labels["version"].split(".")[0] == "8"
        assert labels["version"] != server_info["redis_version"]  # 7.2.4, for clients
    else:
        assert labels["version"] == server_info["redis_version"]
        assert labels["version"].startswith("7.")


# --- the command histogram ---------------------------------------------------------------


async def test_command_histogram_against_a_known_workload(
    redis_private: RedisServer, start_exporter: Any
) -> None:
    with redis_private.client() as c:
        c.mset({f"k{i}": "v" for i in range(100)})
    exp = await start_exporter(cfg(redis_private.target("w")))
    await wait_up(exp, "w")  # the first poll is the baseline
    await exp.polls("redis", "w", 1)
    hits0 = await exp.value("sparki_redis_keyspace_hits_total", target="w")
    misses0 = await exp.value("sparki_redis_keyspace_misses_total", target="w")

    with redis_private.client() as c:
        pipe = c.pipeline(transaction=False)
        for i in range(300):
            pipe.get(f"k{i % 100}")
        for i in range(200):
            pipe.get(f"missing{i}")
        pipe.execute()
    run_slow(redis_private, 12_000, 3)
    await exp.polls("redis", "w", 2)

    get = await histogram(exp, "w", "get")
    assert get["count"] == 500, get
    assert_cumulative_without_gaps(get)
    assert get["6.6e-05"] >= 475, get  # fast GETs land at the bottom
    evals = await histogram(exp, "w", "eval")
    assert evals["count"] == 3 and evals["+Inf"] == 3, evals
    assert evals["0.008454"] == 0 and evals["0.01"] == 0, evals  # ~12 ms: above 8.454 ms
    assert evals["sum"] >= 0.036, evals
    assert_cumulative_without_gaps(evals)
    assert await exp.value("sparki_redis_keyspace_hits_total", target="w") - hits0 == 300
    assert await exp.value("sparki_redis_keyspace_misses_total", target="w") - misses0 == 200


async def test_commands_beyond_the_cap_go_to_other_and_never_decrease(
    redis_private: RedisServer, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg(redis_private.target("cap", commands_top_n=1)))
    await wait_up(exp, "cap")
    snapshots = [await all_histogram_values(exp, "cap")]

    async def phase(command: str, times: int) -> None:
        with redis_private.client() as c:
            pipe = c.pipeline(transaction=False)
            for i in range(times):
                pipe.execute_command(command, f"key{i % 10}")
            pipe.execute()
        await exp.polls("redis", "cap", 2)
        snapshots.append(await all_histogram_values(exp, "cap"))

    await phase("GET", 1000)
    cmds = {s.labels["cmd"] for s in await exp.samples(f"{HIST}_count", target="cap")}
    assert cmds == {"get", "other"}, cmds
    get_before = (await histogram(exp, "cap", "get"))["count"]
    assert get_before == 1000
    await phase("INCR", 3000)  # incr overtakes get: get leaves the top-1, its series goes
    cmds = {s.labels["cmd"] for s in await exp.samples(f"{HIST}_count", target="cap")}
    assert cmds == {"incr", "other"}, cmds
    await phase("GET", 5000)  # get is back on top, resuming where it was
    assert (await histogram(exp, "cap", "get"))["count"] == get_before + 5000
    for before, after in itertools.pairwise(snapshots):
        assert_never_decreased(before, after)
    # Tracked: every command the server has a histogram for (ours included), not a bound.
    with redis_private.client() as c:
        on_server = latency.parse_latency_histogram(c.execute_command("LATENCY", "HISTOGRAM"))
    await exp.polls("redis", "cap", 2)  # the first may have read the server before us
    assert await exp.value("sparki_redis_commands_tracked", target="cap") == len(on_server)


# --- memory --------------------------------------------------------------------------------


async def test_memory_used_and_max_and_evictions_under_allkeys_lru(
    redis_private: RedisServer, start_exporter: Any
) -> None:
    with redis_private.client() as c:
        c.config_set("maxmemory", "4mb")
        c.config_set("maxmemory-policy", "allkeys-lru")
    exp = await start_exporter(cfg(redis_private.target("mem")))
    await wait_up(exp, "mem")
    assert await exp.value("sparki_redis_memory_max_bytes", target="mem") == 4 * 1024 * 1024
    assert await exp.value("sparki_redis_evicted_keys_total", target="mem") == 0
    with redis_private.client() as c:
        value = "x" * 32 * 1024
        for i in range(400):  # ~12.5 MB into 4 MB
            c.set(f"fill:{i}", value)
    await exp.polls("redis", "mem", 2)
    assert await exp.value("sparki_redis_evicted_keys_total", target="mem") > 0
    used = await exp.value("sparki_redis_memory_used_bytes", target="mem")
    assert 0 < used <= 6 * 1024 * 1024
    keys = await exp.value("sparki_redis_db_keys", target="mem", db="0")
    assert 0 < keys < 400


# --- capabilities -----------------------------------------------------------------------------


async def test_acl_user_without_latency_keeps_the_rest_and_says_how_to_fix_it(
    redis_acl: AclServer, start_exporter: Any, captured_logs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retry every poll: still one log line.
    monkeypatch.setattr(redis_capability, "RECHECK_AFTER", 0.0)
    exp = await start_exporter(cfg(redis_acl.target("acl")))
    await wait_up(exp, "acl")
    await exp.polls("redis", "acl", 3)
    assert await capability(exp, "acl", "latency_histogram") == 0
    assert await capability(exp, "acl", "config") == 1
    assert await exp.value("sparki_redis_memory_used_bytes", target="acl") > 0
    assert await exp.value("sparki_redis_probe_duration_seconds_count", target="acl") >= 3
    assert await exp.value("sparki_redis_keyspace_hits_total", target="acl") is not None
    assert await exp.samples(f"{HIST}_count", target="acl") == []
    assert await up(exp, "acl") == 1
    lines = [ln for ln in captured_logs().splitlines() if "LATENCY HISTOGRAM unavailable" in ln]
    assert len(lines) == 1, lines
    assert "problem=permission" in lines[0] and "+latency|histogram" in lines[0]

    # Granting it is picked up without a restart, with one line saying so.
    with redis_acl.server.client() as c:
        c.execute_command("ACL", "SETUSER", AclServer.USER, "+latency|histogram")

    async def granted() -> bool:
        return await capability(exp, "acl", "latency_histogram") == 1

    await exp.wait_for(granted, 15)
    assert "latency_histogram available again" in captured_logs()


async def test_config_refused_like_a_managed_service(
    redis_factory: Any, start_exporter: Any, captured_logs: Any
) -> None:
    server = redis_factory(settings=['rename-command CONFIG ""'])
    exp = await start_exporter(cfg(server.target("managed")))
    await wait_up(exp, "managed")
    await exp.polls("redis", "managed", 2)
    assert await capability(exp, "managed", "config") == 0
    assert await capability(exp, "managed", "latency_histogram") == 1
    assert await exp.value("sparki_redis_memory_max_bytes", target="managed") == 0
    lines = [ln for ln in captured_logs().splitlines() if "CONFIG GET unavailable" in ln]
    assert len(lines) == 1 and "problem=unsupported" in lines[0], lines


async def test_latency_tracking_disabled_is_reported(
    redis_private: RedisServer, start_exporter: Any, captured_logs: Any
) -> None:
    with redis_private.client() as c:
        c.config_set("latency-tracking", "no")
    exp = await start_exporter(cfg(redis_private.target("lt")))
    await wait_up(exp, "lt")
    assert await capability(exp, "lt", "latency_histogram") == 0
    assert "CONFIG SET latency-tracking yes" in captured_logs()
    with redis_private.client() as c:
        c.config_set("latency-tracking", "yes")

    async def enabled() -> bool:
        return await capability(exp, "lt", "latency_histogram") == 1

    await exp.wait_for(enabled, 15)


# --- failures and resets ----------------------------------------------------------------------


async def test_restart_and_resetstat_never_decrease_and_recover(
    redis_private: RedisServer, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg(redis_private.target("rs")))
    await wait_up(exp, "rs")
    with redis_private.client() as c:
        for _ in range(50):
            c.get("a")
    await exp.polls("redis", "rs", 2)
    before = await all_histogram_values(exp, "rs")
    assert (await histogram(exp, "rs", "get"))["count"] == 50

    redis_private.stop()
    with timed() as t:
        await wait_up(exp, "rs", 0.0, timeout=10)
    assert t[0] < 10
    with timed() as t:
        await exp.scrape()
    assert t[0] < 1.0  # /metrics never waits on a target
    redis_private.start()
    await wait_up(exp, "rs", 1.0, timeout=20)
    with redis_private.client() as c:
        for _ in range(10):
            c.get("a")
    await exp.polls("redis", "rs", 2)
    after_restart = await all_histogram_values(exp, "rs")
    assert_never_decreased(before, after_restart)
    assert (await histogram(exp, "rs", "get"))["count"] == 60  # counted since the restart

    with redis_private.client() as c:
        c.config_resetstat()
        for _ in range(7):
            c.get("a")
    await exp.polls("redis", "rs", 2)
    after_reset = await all_histogram_values(exp, "rs")
    assert_never_decreased(after_restart, after_reset)
    assert (await histogram(exp, "rs", "get"))["count"] == 67


class Driven:
    """One target polled by hand against a real server: the test decides what happens
    between two polls, which a scheduled exporter cannot promise on a loaded machine."""

    def __init__(self, server: RedisServer, **extra: Any) -> None:
        root = config_mod.validate({"redis": [server.target("driven", **extra)]}, {})
        self.target = adapter.RedisTarget(root.targets()[0][1], root)  # type: ignore[arg-type]

    async def poll(self, timeout: float = 20.0) -> dict[str, int]:
        """Poll until one succeeds (the first after a restart fails); counts per cmd."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                snap = await self.target.poll()
                return {cmd: hist.count for cmd, hist in snap.nodes[0].part("latency").commands}
            except PollError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self.target.close()


def run_gets(server: RedisServer, times: int) -> None:
    with server.client() as c:
        pipe = c.pipeline(transaction=False)
        for _ in range(times):
            pipe.get("a")
        pipe.execute()


def sleeps(server: RedisServer, times: int, *, latency_calls: int = 0) -> None:
    """``times`` DEBUG SLEEP 0.01; ``latency_calls`` LATENCY HISTOGRAMs from us first.

    Every sleep lands in the (10 ms, 16.9 ms] bucket, so after a missed reset no bucket
    of the next reply is lower than before it: only the reset checks under test can
    tell a reset from growth (GETs of a few µs spread over buckets at random, and a
    bucket going backwards would reveal the reset by chance)."""
    with server.client() as c:
        for _ in range(latency_calls):
            c.execute_command("LATENCY", "HISTOGRAM", "ping")
        for _ in range(times):
            c.execute_command("DEBUG", "SLEEP", "0.01")


@pytest.fixture
def redis_debug(redis_factory: Any) -> RedisServer:
    """A private server that allows DEBUG SLEEP (Redis 7 refuses it by default)."""
    return redis_factory(settings=["enable-debug-command yes"])


@pytest.mark.parametrize("polls_before", [1, 3])
async def test_resetstat_followed_by_more_calls_than_before_counts_from_the_reset(
    redis_debug: RedisServer, polls_before: int
) -> None:
    """A young server: after the reset every count, the total included, is higher than at
    the previous poll, so only the exporter's own missing call reveals the reset."""
    driven = Driven(redis_debug)
    try:
        sleeps(redis_debug, 2)
        counted = await driven.poll()  # baseline: debug = 2, not counted
        for _ in range(polls_before - 1):
            sleeps(redis_debug, 1)
            counted = await driven.poll()
        before = counted.get("debug", 0)
        assert before == polls_before - 1
        with redis_debug.client() as c:
            c.config_resetstat()
        sleeps(redis_debug, 6)
        assert (await driven.poll())["debug"] == before + 6
    finally:
        await driven.close()


async def test_restart_followed_by_more_calls_is_seen_by_run_id_alone(
    redis_debug: RedisServer,
) -> None:
    """After the restart another client's LATENCY HISTOGRAM calls hide the exporter's own
    missing call and every count grows: only the new run_id says the server restarted."""
    driven = Driven(redis_debug)
    try:
        sleeps(redis_debug, 2)
        await driven.poll()  # baseline
        redis_debug.restart()
        sleeps(redis_debug, 6, latency_calls=3)
        assert (await driven.poll())["debug"] == 6
    finally:
        await driven.close()


async def test_resetstat_after_heavy_traffic_is_seen_by_the_total_alone(
    redis_debug: RedisServer,
) -> None:
    """The reset hides behind another client's LATENCY HISTOGRAM calls and DEBUG grows, but
    total_commands_processed went backwards: that alone must reveal the reset."""
    driven = Driven(redis_debug)
    try:
        run_gets(redis_debug, 500)
        sleeps(redis_debug, 2)
        await driven.poll()  # baseline
        with redis_debug.client() as c:
            c.config_resetstat()
        sleeps(redis_debug, 6, latency_calls=3)
        assert (await driven.poll())["debug"] == 6
    finally:
        await driven.close()


NO_CONFIG_USER = "mon-noconfig"
NO_CONFIG_PASSWORD = "mon-N0config"


@pytest.mark.parametrize("config_get", [True, False], ids=["config-allowed", "config-refused"])
async def test_latency_tracking_off_is_not_mistaken_for_a_reset(
    redis_factory: Any, config_get: bool
) -> None:
    """With tracking off nothing is counted, the exporter's own call included: frozen
    counts must not be re-added at every poll as if the statistics had been reset,
    whether or not the exporter may read latency-tracking (managed services refuse
    CONFIG); when it may, not even once when tracking is switched back on."""
    rule = "-@all +ping +info +latency|histogram +client|setname"
    server = redis_factory(
        users=[f"{NO_CONFIG_USER} on >{NO_CONFIG_PASSWORD} resetkeys resetchannels {rule}"]
    )
    if config_get:
        driven = Driven(server)
    else:
        driven = Driven(server, username=NO_CONFIG_USER, password=NO_CONFIG_PASSWORD)
    try:
        run_gets(server, 10)
        await driven.poll()
        run_gets(server, 5)
        assert (await driven.poll())["get"] == 5
        with server.client() as c:
            c.config_set("latency-tracking", "no")
        for _ in range(3):
            run_gets(server, 5)
            assert (await driven.poll())["get"] == 5
        if not config_get:
            return  # switching it back on is then indistinguishable from a reset
        # Back on: our last call went uncounted, which is no reset either.
        with server.client() as c:
            c.config_set("latency-tracking", "yes")
        run_gets(server, 5)
        assert (await driven.poll())["get"] == 10
        run_gets(server, 5)
        assert (await driven.poll())["get"] == 15
    finally:
        await driven.close()


async def test_hung_address_goes_down_within_the_deadline_and_recovers(
    hung_server: Any, redis_server: RedisServer, redis_factory: Any, start_exporter: Any
) -> None:
    hung = {"name": "hung", "url": f"redis://127.0.0.1:{hung_server.port}"}
    exp = await start_exporter(cfg(hung, redis_server.target("healthy")))
    with timed() as t:
        await exp.wait_for(lambda: exp.runner("redis", "hung").state.polled, 10)
    assert t[0] < 5  # one poll timeout (0.8 s) plus start jitter, with slack
    assert await up(exp, "hung") == 0
    reason = await exp.samples("sparki_last_poll_error_reason", adapter="redis", target="hung")
    assert [s.labels["reason"] for s in reason] == ["timeout"]
    await wait_up(exp, "healthy")
    for _ in range(5):
        with timed() as t:
            await exp.scrape()
        assert t[0] < 1.0

    # The address starts answering (a real server on the same port): no exporter restart.
    hung_server.close()
    redis_factory(port=hung_server.port)
    await wait_up(exp, "hung", 1.0, timeout=20)


async def test_cluster_flag_against_a_plain_server_says_so(
    redis_server: RedisServer, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg(redis_server.target("notcluster", cluster=True)))
    await exp.wait_for(lambda: exp.runner("redis", "notcluster").state.polled, 10)
    state = exp.runner("redis", "notcluster").state
    assert state.last_reason == Reason.PROTOCOL
    assert "cluster mode disabled" in (state.last_error or "")


# --- cluster -----------------------------------------------------------------------------------


async def node_roles(exp: Any, target: str) -> dict[str, tuple[str, float]]:
    return {
        s.labels["node"]: (s.labels["role"], s.value)
        for s in await exp.samples("sparki_redis_node_up", target=target)
    }


async def test_cluster_every_node_with_its_role_following_joins_and_leaves(
    redis_cluster: Any, start_exporter: Any
) -> None:
    first = redis_cluster.nodes[0]
    via_seed = {  # the URL does not answer: discovery goes through seed_nodes
        "name": "via-seed",
        "url": f"redis://127.0.0.1:{free_port()}",
        "cluster": True,
        "seed_nodes": [first.address],
    }
    exp = await start_exporter(cfg(redis_cluster.target("cl"), via_seed))

    async def three_up(target: str = "cl") -> Any:
        roles = await node_roles(exp, target)
        return len(roles) == 3 and all(v == 1 for _, v in roles.values()) and roles

    roles = await exp.wait_for(three_up, 20)
    assert await exp.wait_for(lambda: three_up("via-seed"), 20) == roles
    assert {r for r, _ in roles.values()} == {"primary"}
    ids = {n.node_id()[:8] for n in redis_cluster.nodes}
    assert set(roles) == ids  # node = the first 8 hex digits of the cluster node id
    used = await exp.samples("sparki_redis_memory_used_bytes", target="cl")
    assert {s.labels["node"] for s in used} == ids
    assert {s.labels["role"] for s in used} == {"primary"}
    assert await exp.value("sparki_redis_cluster_state_ok", target="cl") == 1
    text = await exp.scrape()
    for node in redis_cluster.nodes:
        assert node.address not in text and f":{node.port}" not in text

    replica = redis_cluster.add_replica(of=0)

    async def replica_present() -> Any:
        roles = await node_roles(exp, "cl")
        return len(roles) == 4 and roles.get(replica.node_id()[:8]) == ("replica", 1) and roles

    await exp.wait_for(replica_present, 30)
    get = await exp.samples(f"{HIST}_count", target="cl", role="replica")
    assert get, "the replica's command histogram is exported"

    redis_cluster.remove(replica)

    async def back_to_three() -> bool:
        return set(await node_roles(exp, "cl")) == ids

    await exp.wait_for(back_to_three, 30)

    # A node that dies is reported by node, the target stays up; killing the node the
    # URL points at also makes discovery fall back to the other known nodes.
    victim = redis_cluster.nodes[0]
    victim_id = victim.node_id()[:8]
    victim.kill()

    async def victim_down() -> bool:
        return (await node_roles(exp, "cl")).get(victim_id, ("", 1))[1] == 0

    await exp.wait_for(victim_down, 20)
    assert await up(exp, "cl") == 1
    assert await exp.samples("sparki_redis_memory_used_bytes", target="cl", node=victim_id) == []


# --- TLS, sockets, secrets ---------------------------------------------------------------------


async def test_tls_with_a_test_ca_and_client_certificate(
    redis_tls: RedisServer, start_exporter: Any
) -> None:
    assert redis_tls.tls is not None
    good = redis_tls.target("tls")
    wrong_ca = redis_tls.target("wrongca", tls_ca_file=str(redis_tls.tls.wrong_ca_file))
    plain = {"name": "plain", "url": f"redis://127.0.0.1:{redis_tls.port}"}
    exp = await start_exporter(cfg(good, wrong_ca, plain))
    await wait_up(exp, "tls")
    assert await exp.value("sparki_redis_memory_used_bytes", target="tls") > 0
    assert await capability(exp, "tls", "latency_histogram") == 1
    for name in ("wrongca", "plain"):
        await exp.wait_for(lambda n=name: exp.runner("redis", n).state.polled, 10)
        assert await up(exp, name) == 0
    state = exp.runner("redis", "wrongca").state
    assert state.last_reason == Reason.CONNECT
    assert "TLS handshake failed" in (state.last_error or "")
    assert "127.0.0.1" not in (state.last_error or "")


async def test_unix_socket(redis_factory: Any, start_exporter: Any) -> None:
    server = redis_factory(unix_socket=True)
    exp = await start_exporter(cfg({"name": "sock", "url": f"unix://{server.socket}"}))
    await wait_up(exp, "sock")
    assert await exp.value("sparki_redis_connected_clients", target="sock") >= 1


async def test_password_never_appears_in_metrics_logs_landing_page_or_errors(
    redis_factory: Any,
    start_exporter: Any,
    captured_logs: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    password = "Sup3r-S3cret-" + tmp_path.name[-6:]
    wrong = "Wr0ng-S3cret-" + tmp_path.name[-6:]
    server = redis_factory(password=password)
    # Switch the core's redaction off: the adapter itself must not leak anything.
    monkeypatch.setattr("exporter.service.register_secrets", lambda secrets: None)
    secret_file = tmp_path / "redis-password"
    secret_file.write_text(password + "\n")
    targets = [
        {"name": "by-file", "url": server.url, "password_file": str(secret_file)},
        {"name": "in-url", "url": f"redis://:{password}@127.0.0.1:{server.port}/0"},
        {"name": "wrong", "url": server.url, "password": wrong},
        {"name": "none", "url": server.url},
        {"name": "refused", "url": f"redis://:{password}@127.0.0.1:1"},
    ]
    exp = await start_exporter(cfg(*targets))
    await wait_up(exp, "by-file")
    await wait_up(exp, "in-url")
    for name in ("wrong", "none", "refused"):
        await exp.wait_for(lambda n=name: exp.runner("redis", n).state.polled, 10)
        assert await up(exp, name) == 0
    assert exp.runner("redis", "wrong").state.last_reason == Reason.AUTH
    assert exp.runner("redis", "none").state.last_reason == Reason.AUTH
    assert exp.runner("redis", "refused").state.last_reason == Reason.CONNECT
    await exp.polls("redis", "wrong", 1)

    _, _, landing = await exp.get("/")
    errors = [exp.runner("redis", t["name"]).state.last_error or "" for t in targets]
    everything = "\n".join([await exp.scrape(), landing.decode(), captured_logs(), *errors])
    for leak in (password, wrong, "redis://", f"127.0.0.1:{server.port}", "127.0.0.1:1"):
        assert leak not in everything, f"{leak!r} leaked"
    assert "authentication failed" in errors[2]
    assert errors[4] == "cannot connect: connection refused"

    # Invalid config never echoes the value either.
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(cfg({"name": "bad", "url": f"redis://:{password}@host:port"}), {})
    assert password not in str(err.value) and "url" in str(err.value)


# --- configuration and units --------------------------------------------------------------------


def test_from_env_builds_targets_without_putting_the_password_in_the_url() -> None:
    env = {"REDIS_HOST": "cache.internal", "REDIS_PORT": "6380", "REDIS_PASSWORD": "pw-123"}
    config = config_mod.from_environment(env)
    (_, target), *_ = config.targets()
    assert target.name == "redis" and target.url == "redis://cache.internal:6380"
    assert target.password is not None and target.password.get_secret_value() == "pw-123"
    assert "pw-123" in config.secrets()
    env = {"REDIS_CLUSTER_NODES": "n1:7000, n2:7001,n3:7002", "REDIS_TLS": "true"}
    (_, target), *_ = config_mod.from_environment(env).targets()
    assert target.cluster and target.url == "rediss://n1:7000"
    assert target.seed_nodes == ("n2:7001", "n3:7002")
    assert adapter.from_env({}) == []


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ({"url": "http://x:1"}, "redis://"),
        ({"url": "redis://x:1?db=2"}, "not supported"),
        ({"url": "redis://x:1", "tls_ca_file": "/etc/hostname"}, "rediss://"),
        ({"url": "rediss://x:1", "tls_cert_file": "/etc/hostname"}, "tls_key_file"),
        ({"url": "rediss://x:1", "tls_ca_file": "/nonexistent/ca.pem"}, "no such file"),
        ({"url": "unix:///tmp/s", "cluster": True}, "unix"),
        ({"url": "redis://x:1", "seed_nodes": ["a:1"]}, "cluster: true"),
        ({"url": "redis://x:1", "cluster": True, "seed_nodes": ["nohost"]}, "HOST:PORT"),
        ({"url": "redis://x:1", "password": "a", "password_file": "/etc/hostname"}, "either"),
    ],
)
def test_config_errors_are_clear(target: dict[str, Any], problem: str) -> None:
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(cfg({"name": "t", **target}), {})
    assert problem in str(err.value)


def test_gap_filling_carries_the_count_below_and_inf_is_calls() -> None:
    # Redis lists only edges whose count rose: 1 µs: 31, 2 µs: 48, 4 µs: 49, 16 µs: 50.
    filled = latency.fill_buckets({1: 31, 2: 48, 4: 49, 16: 50}, 50)
    by_bound = dict(zip([*latency.COMMAND_BUCKETS_USEC, "inf"], filled, strict=True))
    assert by_bound[2] == 48 and by_bound[4] == 49 and by_bound[8] == 49
    assert by_bound[16] == 50 and by_bound[541065] == 50 and by_bound["inf"] == 50
    # 5 ms and 10 ms carry the Redis edges just below them (4.227 ms, 8.454 ms).
    filled = latency.fill_buckets({4227: 1, 8454: 2, 16908: 3}, 3)
    by_bound = dict(zip([*latency.COMMAND_BUCKETS_USEC, "inf"], filled, strict=True))
    assert (by_bound[4227], by_bound[5000], by_bound[8454], by_bound[10000]) == (1, 1, 2, 2)
    assert latency.fill_buckets({}, 0) == (0,) * (len(latency.COMMAND_BUCKETS_USEC) + 1)


def test_cluster_nodes_parsing_and_short_ids() -> None:
    text = (
        "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave "
        "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n"
        "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 "
        "1426238316232 2 connected 5461-10922\n"
        "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 "
        "1 connected 0-5460\n"
        "6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,noaddr - 0 0 5 disconnected\n"
        "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 handshake - 0 0 3 "
        "connected\n"
    )
    nodes = discovery.parse_cluster_nodes(text)
    assert [(n.id[:4], n.host, n.port, n.role, n.myself) for n in nodes] == [
        ("07c3", "host-4", 30004, "replica", False),
        ("67ed", "127.0.0.1", 30002, "primary", False),
        ("e7d1", "127.0.0.1", 30001, "primary", True),
    ]
    ids = discovery.short_ids(["abcdef0123", "abcdef0199", "ffff000011"])
    assert ids == {"abcdef0123": "abcdef012", "abcdef0199": "abcdef019", "ffff000011": "ffff0000"}


def test_classify_names_no_address() -> None:
    refused = redis.ConnectionError("Error 111 connecting to 10.1.2.3:6379. Connection refused.")
    refused.__context__ = ConnectionRefusedError(111, "Connect call failed ('10.1.2.3', 6379)")
    cases = [
        (redis.AuthenticationError("invalid username-password pair"), Reason.AUTH),
        (redis.exceptions.NoPermissionError("no permissions to run 'info'"), Reason.PERMISSION),
        (redis.TimeoutError("Timeout reading from 10.1.2.3:6379"), Reason.TIMEOUT),
        (refused, Reason.CONNECT),
        (redis.ResponseError("ERR weird"), Reason.PROTOCOL),
        (redis.exceptions.BusyLoadingError("LOADING"), Reason.CONNECT),
        (ValueError("x"), Reason.OTHER),
    ]
    for exc, reason in cases:
        error = adapter.classify(exc)
        assert error.reason == reason, (exc, error.reason)
        assert "10.1.2.3" not in error.message
    assert adapter.classify(refused).message == "cannot connect: connection refused"
    unresolved = redis.ConnectionError("Error -2 connecting to db.internal:6379.")
    unresolved.__context__ = socket.gaierror(-2, "Name or service not known")
    error = adapter.classify(unresolved)
    assert error.reason == Reason.CONNECT and "db.internal" not in error.message
    assert error.message == "cannot resolve the host name: Name or service not known"


raw_histograms = st.lists(
    st.tuples(
        # Before this poll: no reset, a reset the exporter detects (restart, RESETSTAT),
        # or one it cannot see (say, another client's LATENCY calls hid it).
        st.sampled_from(["none", "detected", "missed"]),
        st.dictionaries(
            st.sampled_from(["get", "set", "incr", "eval", "hget"]),
            st.lists(st.integers(0, 50), min_size=3, max_size=3),
            max_size=5,
        ),
    ),
    min_size=1,
    max_size=12,
)


EDGES_USEC = (2, 66, 8454)  # where the generated calls land: one Redis edge each
Counts = tuple[int, int, int]  # calls at each edge


class ReferenceHistograms:
    """What the exported histograms must hold, written from the documented rules rather
    than the code: the first reply is a baseline; afterwards each reply adds, per
    command, its counts since the previous reply, or all its counts when the reset was
    detected or this command's counts went backwards somewhere (a missed reset); the
    addition goes to the command's series while it is among the top-N by latest calls
    (ties by name), else to ``other``."""

    def __init__(self, top_n: int) -> None:
        self.top_n = top_n
        self.calls: dict[str, int] = {}  # latest cumulative calls, as the server said
        self.made: dict[str, list[int]] = {}  # per series: calls at each edge, then usec
        self.other_used = False
        self.top: list[str] = []
        self.previous: dict[str, Counts] | None = None

    def poll(self, server: dict[str, Counts], reset_detected: bool) -> None:
        self.calls.update({cmd: sum(counts) for cmd, counts in server.items()})
        ranked = sorted(self.calls, key=lambda c: (-self.calls[c], c))
        self.top = ranked[: self.top_n]
        self.other_used = self.other_used or len(ranked) > self.top_n
        for cmd in self.top:
            self.made.setdefault(cmd, [0, 0, 0, 0])
        if self.previous is not None:
            for cmd, now in server.items():
                before = self.previous.get(cmd, (0, 0, 0))
                if reset_detected or any(n < b for n, b in zip(now, before, strict=True)):
                    before = (0, 0, 0)
                a, b, c = (n - p for n, p in zip(now, before, strict=True))
                into = self.made.setdefault(cmd if cmd in self.top else latency.OTHER, [0] * 4)
                for i, n in enumerate((a, b, c, a * 1 + b * 50 + c * 5000)):
                    into[i] += n
        self.previous = dict(server)

    def series(self) -> dict[str, tuple[list[int], float]]:
        """Per exported series: cumulative counts at every bound and +Inf, and the sum."""
        names = [*self.top, *([latency.OTHER] if self.other_used else [])]
        out = {}
        for name in names:
            at_edges = self.made.get(name, [0, 0, 0, 0])
            cumulative = [
                sum(n for edge, n in zip(EDGES_USEC, at_edges, strict=False) if edge <= bound)
                for bound in latency.COMMAND_BUCKETS_USEC
            ]
            out[name] = ([*cumulative, sum(at_edges[:3])], at_edges[3] / 1e6)
        return out


@settings(max_examples=300, deadline=None)
@given(raw_histograms, st.integers(0, 3))
def test_exported_histograms_match_a_reference_model_whatever_redis_reports(
    polls: list[tuple[str, dict[str, list[int]]]], top_n: int
) -> None:
    """Random growth, resets (seen or missed) and top-N changes: every exported series
    holds exactly what the reference model says, bucket by bucket, and never decreases."""
    hist = latency.CommandHistograms(top_n)
    model = ReferenceHistograms(top_n)
    server: dict[str, Counts] = {}  # per command: calls at 2 µs, 66 µs, 8454 µs
    previous: dict[tuple[str, int], float] = {}
    for reset, growth in polls:
        if reset != "none":
            server = {}
        for cmd, add in growth.items():
            a, b, c = server.get(cmd, (0, 0, 0))
            server[cmd] = (a + add[0], b + add[1], c + add[2])
        histogram = {}
        for cmd, (a, b, c) in server.items():
            edges = {k: v for k, v in zip(EDGES_USEC, (a, a + b, a + b + c), strict=True) if v}
            histogram[cmd] = (a + b + c, edges)
        usec = {cmd: a * 1 + b * 50 + c * 5000 for cmd, (a, b, c) in server.items()}
        hist.update(hist.raw(histogram, usec), reset == "detected")
        model.poll(server, reset == "detected")
        exported = {
            cmd: ([count for _, count in snap.buckets()], snap.sum) for cmd, snap in hist.series()
        }
        assert exported == model.series()
        for cmd, (cumulative, total) in exported.items():
            for i, value in enumerate([*cumulative, total]):
                assert value >= previous.get((cmd, i), 0), (cmd, i)
                previous[(cmd, i)] = value
