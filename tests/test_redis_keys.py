"""The design's own Redis usage: TTL conformance (ttl) and build-log streams (streams).

Each collector runs against real servers (Debian's Redis 7.0 and Valkey 8, see
fixtures_redis.py) through a NodeContext over one redis.asyncio connection, as the
target gives it; the metric families are read from the collector's own families().
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_redis import RedisServer
from prometheus_client.metrics_core import Metric

from devstack.redis import async_connection, node_context
from exporter.adapters.redis import streams, ttl
from exporter.adapters.redis.context import NodeContext
from exporter.adapters.redis.keyscan import Classifier

REDIS_ALL_SERVERS = True

DESIGN = [
    {"pattern": "session:*", "max_ttl": "24h"},
    {"pattern": "perm:*:*", "max_ttl": "15m"},
    {"pattern": "ratelimit:*:*", "max_ttl": "1m"},
    {"pattern": "build:*:logs"},  # streams: no TTL by design
]


class Target:
    """A target config carrying the fields the collectors read (RedisConfig's, later)."""

    def __init__(self, **fields: Any) -> None:
        self.name = "cache"
        self.__dict__.update(fields)


def samples(fams: list[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels without target) -> value."""
    out = {}
    for fam in fams:
        for s in fam.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "target"))
            assert s.labels["target"] == "cache"
            out[(s.name, labels)] = s.value
    return out


def value(fams: list[Metric], name: str, **labels: str) -> float | None:
    return samples(fams).get((name, tuple(sorted(labels.items()))))


def fill(c: Any, count: int, prefix: str) -> None:
    """``count`` keys without TTL (DEBUG POPULATE needs enable-debug-command)."""
    for start in range(0, count, 1000):
        c.mset({f"{prefix}:{i}": "x" for i in range(start, min(count, start + 1000))})


@pytest.fixture
async def ctx(redis_private: RedisServer) -> Any:
    conn = await async_connection(redis_private)
    try:
        yield node_context(conn)
    finally:
        await conn.disconnect()


def write_design_keys(server: RedisServer) -> dict[str, int]:
    """Keys as the platform writes them, a few of them wrong; returns how many of each."""
    with server.client() as c:
        pipe = c.pipeline(transaction=False)
        for i in range(30):
            pipe.set(f"session:{i:04x}", "token", ex=86400)  # by the book
        for i in range(3):
            pipe.set(f"session:leak{i}", "token")  # forgot the TTL
        for i in range(5):
            pipe.set(f"perm:u{i}:w1", "admin", ex=900)
        for i in range(4):
            pipe.set(f"perm:u{i}:w2", "admin", ex=3600)  # 1 h where 15 min is the policy
        for i in range(6):
            pipe.set(f"ratelimit:u{i}:/api/builds", 3, ex=60)
        pipe.set("perm:u1", "no second colon: not perm:*:*")
        pipe.set("feature-flags", "{}")
        pipe.execute()
        c.xadd("build:7:logs", {"line": "compiling"})
    return {"session:*": 33, "perm:*:*": 9, "ratelimit:*:*": 6, "build:*:logs": 1, "other": 2}


# --- TTL conformance ------------------------------------------------------------------------


async def test_ttl_sample_classifies_the_design_keys_over_several_polls(
    redis_private: RedisServer, ctx: NodeContext
) -> None:
    expected = write_design_keys(redis_private)
    keyspace = sum(expected.values())
    policy = {"patterns": DESIGN, "keys_per_poll": 10, "memory_keys_per_poll": 50}
    collector = ttl.Collector(Target(ttl_policy=policy))
    part = await collector.collect(ctx)
    # A budget smaller than the keyspace: the first poll read only part of it...
    assert part.passes == 0
    first = sum(c.sampled for c in part.counts)
    assert 10 <= first < keyspace
    # ...and the cursor carries over until the pass is complete.
    polls = 1
    while part.passes < 1:
        part = await collector.collect(ctx)
        polls += 1
        assert polls < 50, "the cursor never came back to 0"
    fams = ttl.families([("", part)], "cache")
    for pattern, count in expected.items():
        assert value(fams, "sparki_redis_ttl_keys_sampled_total", pattern=pattern) == count
    without = "sparki_redis_ttl_keys_without_ttl_total"
    assert value(fams, without, pattern="session:*") == 3
    assert value(fams, without, pattern="perm:*:*") == 0
    assert value(fams, without, pattern="build:*:logs") == 1  # expected there, by policy
    assert value(fams, without, pattern="other") == 2
    over = "sparki_redis_ttl_keys_over_policy_total"
    assert value(fams, over, pattern="perm:*:*") == 4
    assert value(fams, over, pattern="session:*") == 0
    assert value(fams, over, pattern="ratelimit:*:*") == 0
    # Every key read was measured (memory budget above the key budget); real bytes.
    for pattern, count in expected.items():
        assert value(fams, "sparki_redis_ttl_memory_sampled_keys_total", pattern=pattern) == count
        size = value(fams, "sparki_redis_ttl_memory_sampled_bytes_total", pattern=pattern)
        assert size is not None and size >= 40 * count
    # The policy is exported for the patterns that have one, in seconds.
    policy_gauge = "sparki_redis_ttl_policy_seconds"
    assert value(fams, policy_gauge, pattern="session:*") == 86400
    assert value(fams, policy_gauge, pattern="perm:*:*") == 900
    assert value(fams, policy_gauge, pattern="build:*:logs") is None
    assert value(fams, "sparki_redis_ttl_scan_passes_total") == 1

    # The next pass counts every key again: counters only grow.
    while part.passes < 2:
        part = await collector.collect(ctx)
    fams = ttl.families([("", part)], "cache")
    assert value(fams, without, pattern="session:*") == 6
    assert value(fams, "sparki_redis_ttl_keys_sampled_total", pattern="other") == 4


async def test_ttl_never_sends_keys_and_costs_a_bounded_number_of_commands(
    redis_private: RedisServer, ctx: NodeContext
) -> None:
    with redis_private.client() as c:
        fill(c, 5000, "session")
        c.config_resetstat()
    policy = {"patterns": DESIGN, "keys_per_poll": 100, "memory_keys_per_poll": 7}
    collector = ttl.Collector(Target(ttl_policy=policy))
    for _ in range(5):
        await collector.collect(ctx)
    with redis_private.client() as c:
        stats = c.info("commandstats")
    assert "cmdstat_keys" not in stats
    # SCAN COUNT is a hint: a poll may read a few keys more than asked, never many more.
    assert 5 <= stats["cmdstat_scan"]["calls"] <= 5 * ttl.MAX_SCAN_CALLS
    assert 500 <= stats["cmdstat_pttl"]["calls"] <= 5 * 150
    assert stats["cmdstat_memory|usage"]["calls"] == 5 * 7


async def test_ttl_and_streams_are_off_without_patterns(ctx: NodeContext) -> None:
    async def refuse(*args: Any) -> Any:
        raise AssertionError(f"sent {args[0]} without a policy")

    silent = NodeContext(node="", role=None, info={}, call=refuse, pipeline=refuse)
    for config in (Target(), Target(ttl_policy={"patterns": []}, streams={"patterns": []})):
        part = await ttl.Collector(config).collect(silent)
        assert not part.active
        assert ttl.families([("", part)], "cache")[0].samples == []
        spart = await streams.Collector(config).collect(silent)
        assert all(not f.samples for f in streams.families([("", spart)], "cache"))


async def test_ttl_skips_cluster_replicas_and_labels_cluster_nodes(
    redis_private: RedisServer, ctx: NodeContext
) -> None:
    write_design_keys(redis_private)
    collector = ttl.Collector(Target(ttl_policy={"patterns": DESIGN}))
    replica = NodeContext(node="b2c3d4e5", role="replica", info={}, call=ctx.call)
    assert not (await collector.collect(replica)).active
    primary = NodeContext("a1b2c3d4", "primary", {}, ctx.call, ctx.pipeline)
    part = await collector.collect(primary)
    fams = ttl.families([("a1b2c3d4", part), ("b2c3d4e5", await collector.collect(replica))], "x")
    nodes = {s.labels.get("node") for f in fams[:-1] for s in f.samples}
    assert nodes == {"a1b2c3d4"}


async def test_ttl_keys_that_are_not_utf8_are_sampled_too(
    redis_private: RedisServer, ctx: NodeContext
) -> None:
    with redis_private.client(decode_responses=False) as c:
        c.set(b"session:\xff\xfe", b"x")  # no TTL, a binary session id
        c.set(b"session:ok", b"x", ex=60)
    collector = ttl.Collector(Target(ttl_policy={"patterns": DESIGN}))
    part = await collector.collect(ctx)
    fams = ttl.families([("", part)], "cache")
    assert value(fams, "sparki_redis_ttl_keys_sampled_total", pattern="session:*") == 2
    assert value(fams, "sparki_redis_ttl_keys_without_ttl_total", pattern="session:*") == 1


def test_policy_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        ttl.TtlPolicy.model_validate({"patterns": [{"pattern": "a*"}, {"pattern": "a*"}]})
    with pytest.raises(ValueError, match="other"):
        ttl.TtlPolicy.model_validate({"patterns": [{"pattern": "other"}]})
    with pytest.raises(ValueError):
        ttl.TtlPolicy.model_validate({"patterns": [{"pattern": "a*", "ttl": "1h"}]})
    rule = ttl.TtlPolicy.model_validate({"patterns": [{"pattern": "a*", "max_ttl": "15m"}]})
    assert rule.patterns[0].max_ttl == 900


def test_glob_classifier_follows_redis_globs_first_match_wins() -> None:
    classify = Classifier(["perm:*:*", "perm:*", "build:[0-9]*:logs", "h?llo", r"lit\*", "[^a]x"])
    assert classify("perm:u1:w1") == "perm:*:*"
    assert classify("perm:u1") == "perm:*"
    assert classify("perm:") == "perm:*"
    assert classify("build:42:logs") == "build:[0-9]*:logs"
    assert classify("build:x42:logs") is None
    assert classify("hallo") == "h?llo"
    assert classify("hxllo!") is None
    assert classify("lit*") == r"lit\*"
    assert classify("litx") is None
    assert classify("bx") == "[^a]x"
    assert classify("ax") is None
    assert classify("multi\nline") is None
    assert Classifier(["*"])("multi\nline") == "*"


# --- build-log streams ----------------------------------------------------------------------


def add_entries(c: Any, key: str, ages: list[int], now_ms: int) -> list[str]:
    """Entries whose ids carry the given ages in seconds (ids are times, in ms)."""
    return [
        c.xadd(key, {"line": f"step {i}"}, id=f"{now_ms - age * 1000}-0")
        for i, age in enumerate(ages)
    ]


@pytest.fixture
def now_ms(redis_private: RedisServer) -> int:
    with redis_private.client() as c:
        seconds, micros = c.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_streams_pending_lag_and_ages_of_a_build_log_group(
    redis_private: RedisServer, ctx: NodeContext, now_ms: int, redis_kind: str
) -> None:
    with redis_private.client() as c:
        add_entries(c, "build:1:logs", [120, 110, 100, 90], now_ms)
        c.xgroup_create("build:1:logs", "archiver", id="0")
        c.xgroup_create("build:1:logs", "viewer", id="0")
        # The archiver read two lines and died before acknowledging them.
        c.xreadgroup("archiver", "worker-1", {"build:1:logs": ">"}, count=2)
        # The viewer read everything and acknowledged it.
        got = c.xreadgroup("viewer", "ws-1", {"build:1:logs": ">"})
        c.xack("build:1:logs", "viewer", *[entry_id for entry_id, _ in got[0][1]])
        add_entries(c, "build:2:logs", [30], now_ms)
        c.xgroup_create("build:2:logs", "archiver", id="$")  # nothing new since: caught up
        add_entries(c, "chat:1", [5], now_ms)  # a stream no pattern names
        c.set("build:3:logs", "a string, not a stream")
    collector = streams.Collector(Target(streams={"patterns": ["build:*:logs"]}))
    part = await collector.collect(ctx)
    fams = streams.families([("", part)], "cache")
    p = {"pattern": "build:*:logs"}
    assert value(fams, "sparki_redis_stream_keys", **p) == 2
    assert value(fams, "sparki_redis_stream_entries", **p) == 5
    archiver = {**p, "group": "archiver"}
    viewer = {**p, "group": "viewer"}
    assert value(fams, "sparki_redis_stream_group_streams", **archiver) == 2
    assert value(fams, "sparki_redis_stream_group_pending_entries", **archiver) == 2
    assert value(fams, "sparki_redis_stream_group_pending_entries", **viewer) == 0
    # The oldest pending entry was written 120 s ago; the oldest undelivered 100 s ago.
    pending_age = value(fams, "sparki_redis_stream_group_pending_age_seconds", **archiver)
    assert pending_age is not None and 120 <= pending_age < 130
    undelivered = value(fams, "sparki_redis_stream_group_undelivered_age_seconds", **archiver)
    assert undelivered is not None and 100 <= undelivered < 110
    assert value(fams, "sparki_redis_stream_group_pending_age_seconds", **viewer) == 0
    assert value(fams, "sparki_redis_stream_group_undelivered_age_seconds", **viewer) == 0
    # lag: two entries of build:1:logs not yet delivered to the archiver (Redis 7+).
    assert value(fams, "sparki_redis_stream_group_lag_entries", **archiver) == 2
    assert value(fams, "sparki_redis_stream_group_lag_entries", **viewer) == 0
    names = {s.labels.get("pattern") for f in fams for s in f.samples}
    assert names <= {"build:*:logs", None}

    # The archiver comes back, acknowledges and reads the rest: caught up.
    with redis_private.client() as c:
        pending = c.xpending_range("build:1:logs", "archiver", "-", "+", 10)
        c.xack("build:1:logs", "archiver", *[e["message_id"] for e in pending])
        rest = c.xreadgroup("archiver", "worker-1", {"build:1:logs": ">"})
        c.xack("build:1:logs", "archiver", *[entry_id for entry_id, _ in rest[0][1]])
        c.delete("build:2:logs")
    fams = streams.families([("", await collector.collect(ctx))], "cache")
    assert value(fams, "sparki_redis_stream_keys", **p) == 1  # the deleted one dropped
    assert value(fams, "sparki_redis_stream_group_pending_entries", **archiver) == 0
    assert value(fams, "sparki_redis_stream_group_pending_age_seconds", **archiver) == 0
    assert value(fams, "sparki_redis_stream_group_undelivered_age_seconds", **archiver) == 0


async def test_streams_groups_beyond_top_n_go_to_other(
    redis_private: RedisServer, ctx: NodeContext, now_ms: int
) -> None:
    with redis_private.client() as c:
        for build in range(3):
            key = f"build:{build}:logs"
            add_entries(c, key, [60, 50], now_ms)
            c.xgroup_create(key, "archiver", id="0")
        c.xgroup_create("build:0:logs", "debug-tail-1", id="0")
        c.xgroup_create("build:1:logs", "debug-tail-2", id="0")
        c.xreadgroup("debug-tail-2", "me", {"build:1:logs": ">"}, count=1)
    conf = {"patterns": ["build:*:logs"], "groups_top_n": 1}
    fams = streams.families(
        [("", await streams.Collector(Target(streams=conf)).collect(ctx))], "cache"
    )
    groups = {
        s.labels["group"]
        for f in fams
        for s in f.samples
        if f.name == "sparki_redis_stream_group_streams"
    }
    assert groups == {"archiver", "other"}  # archiver is in the most streams
    other = {"pattern": "build:*:logs", "group": "other"}
    assert value(fams, "sparki_redis_stream_group_streams", **other) == 2
    assert value(fams, "sparki_redis_stream_group_pending_entries", **other) == 1
    age = value(fams, "sparki_redis_stream_group_pending_age_seconds", **other)
    assert age is not None and 60 <= age < 70


async def test_streams_discovery_resumes_its_cursor_across_polls(
    redis_private: RedisServer, ctx: NodeContext
) -> None:
    with redis_private.client() as c:
        fill(c, 2000, "filler")
        for build in range(5):
            c.xadd(f"build:{build}:logs", {"line": "x"})
        c.config_resetstat()
    conf = {"patterns": ["build:*:logs"], "scan_keys_per_poll": 100, "streams_per_poll": 2}
    collector = streams.Collector(Target(streams=conf))
    seen, polls = [], 0
    part = None
    while part is None or part.passes < 1:
        part = await collector.collect(ctx)
        seen.append(part.patterns[0].streams)
        polls += 1
        assert polls < 100
    assert polls >= 2005 // 1000  # never the whole keyspace in one poll
    assert seen == sorted(seen) and seen[-1] == 5  # found bit by bit, every one
    with redis_private.client() as c:
        stats = c.info("commandstats")
    assert "cmdstat_keys" not in stats
    # at most streams_per_poll streams re-read per poll
    assert stats["cmdstat_xlen"]["calls"] <= 2 * polls


@pytest.fixture
def refused_memory(redis_factory: Any) -> Iterator[RedisServer]:
    user = "mon on >pw ~* resetchannels -@all +scan +pttl +ping"
    yield redis_factory(users=[user])


async def test_ttl_without_memory_usage_permission_still_counts_ttls(
    refused_memory: RedisServer, captured_logs: Any
) -> None:
    from redis.asyncio.connection import Connection

    with refused_memory.client() as c:
        c.set("session:a", "x")
    conn = Connection(
        host="127.0.0.1", port=refused_memory.port, username="mon", password="pw",
        decode_responses=True,
    )  # fmt: skip
    await conn.connect()  # type: ignore[no-untyped-call]
    try:
        collector = ttl.Collector(Target(ttl_policy={"patterns": DESIGN}))
        part = await collector.collect(node_context(conn))
        fams = ttl.families([("", part)], "cache")
        assert value(fams, "sparki_redis_ttl_keys_without_ttl_total", pattern="session:*") == 1
        assert value(fams, "sparki_redis_ttl_memory_sampled_keys_total", pattern="session:*") == 0
        text = captured_logs()
        assert "MEMORY USAGE refused" in text and "+memory|usage" in text
        assert text.count("MEMORY USAGE refused") == 1
        # Not asked again every poll (each refusal would land in ACL LOG).
        started = time.monotonic()
        await collector.collect(node_context(conn))
        assert collector.memory_refused_at is not None
        assert collector.memory_refused_at < started
        assert captured_logs().count("MEMORY USAGE refused") == 1
    finally:
        await conn.disconnect()


# --- through the exporter ----------------------------------------------------------------


async def test_exporter_runs_both_collectors_and_a_refused_one_degrades_alone(
    redis_factory: Any, start_exporter: Any, now_ms: int
) -> None:
    # A monitoring user that may SCAN and read streams but not PTTL: ttl fails, the rest
    # of the target (and the streams collector) is still exported.
    rule = "~* resetchannels -@all +ping +info +config|get +client|setname +latency|histogram"
    user = f"mon on >pw {rule} +scan +time +xlen +xinfo|groups +xpending +xrange"
    server = redis_factory(users=[user])
    with server.client() as c:
        c.set("session:a", "x")
        add_entries(c, "build:9:logs", [300], now_ms)
        c.xgroup_create("build:9:logs", "archiver", id="0")
    keys = {
        "ttl_policy": {"patterns": DESIGN},
        "streams": {"patterns": ["build:*:logs"]},
    }
    exp = await start_exporter(
        {
            "poll_interval": "1s",
            "poll_timeout": "0.8s",
            "redis": [
                server.target("full", **keys),
                {**server.target("limited", **keys), "username": "mon", "password": "pw"},
                server.target("plain"),
            ],
        }
    )

    async def polled() -> bool:
        return (
            await exp.value(
                "sparki_redis_ttl_keys_sampled_total", target="full", pattern="session:*"
            )
            == 1
            and await exp.value("sparki_collector_success", target="limited", collector="ttl") == 0
        )

    await exp.wait_for(polled, 20)
    assert await exp.value("sparki_up", adapter="redis", target="limited") == 1
    assert await exp.value("sparki_collector_success", target="limited", collector="streams") == 1
    age = await exp.value(
        "sparki_redis_stream_group_undelivered_age_seconds",
        target="limited",
        pattern="build:*:logs",
        group="archiver",
    )
    assert age is not None and age >= 300
    assert await exp.value("sparki_redis_memory_used_bytes", target="limited") is not None
    assert await exp.value("sparki_collector_success", target="full", collector="ttl") == 1
    # A target without patterns runs both as no-ops (no command sent): no key metrics.
    assert await exp.value("sparki_collector_success", target="plain", collector="ttl") == 1
    assert (
        await exp.value("sparki_redis_stream_keys", target="plain", pattern="build:*:logs") is None
    )


def test_the_shipped_design_example_is_a_valid_config() -> None:
    from pathlib import Path

    import yaml

    from exporter.config import validate

    path = Path(__file__).resolve().parent.parent / "deploy" / "redis-design-keys.yml"
    target = validate(yaml.safe_load(path.read_text()), {}).redis[0]
    policy = {r.pattern: r.max_ttl for r in target.ttl_policy.patterns}
    assert policy["session:*"] == 86400 and policy["perm:*:*"] == 900
    assert policy["ratelimit:*:*"] == 60 and policy["build:*:logs"] is None
    assert target.streams.patterns == ("build:*:logs",)
    # The example's budgets are the defaults the benchmark measured.
    assert target.ttl_policy.keys_per_poll == ttl.TtlPolicy().keys_per_poll
    assert target.streams.streams_per_poll == streams.StreamsConfig().streams_per_poll


async def test_cluster_primaries_are_sampled_each_with_its_cursor_replicas_skipped(
    redis_cluster: Any, start_exporter: Any
) -> None:
    import redis as redis_py

    startup = [redis_py.cluster.ClusterNode("127.0.0.1", n.port) for n in redis_cluster.nodes]
    with redis_py.RedisCluster(startup_nodes=startup, decode_responses=True) as c:
        for i in range(60):
            c.set(f"session:{i}", "t", ex=86400 if i % 6 else None)  # 10 without TTL
    replica = redis_cluster.add_replica(of=0)
    ids = {n.node_id()[:8] for n in redis_cluster.nodes}
    policy = {"patterns": DESIGN, "keys_per_poll": 10}
    exp = await start_exporter(
        {
            "poll_interval": "1s",
            "poll_timeout": "0.8s",
            "redis": [redis_cluster.target("cl", ttl_policy=policy)],
        }
    )

    async def one_pass_everywhere() -> bool:
        passes = await exp.samples("sparki_redis_ttl_scan_passes_total", target="cl")
        return {s.labels["node"] for s in passes} == ids and all(s.value >= 1 for s in passes)

    await exp.wait_for(one_pass_everywhere, 40)
    sampled = await exp.samples(
        "sparki_redis_ttl_keys_sampled_total", target="cl", pattern="session:*"
    )
    # Every primary sampled its own keys; the replica (same keys as its primary) none.
    assert {s.labels["node"] for s in sampled} == ids
    assert replica.node_id()[:8] not in {s.labels["node"] for s in sampled}
    assert all("role" not in s.labels for s in sampled)
    without = await exp.samples(
        "sparki_redis_ttl_keys_without_ttl_total", target="cl", pattern="session:*"
    )
    # At least one full pass on each primary: every key counted at least once; the
    # shares (the alerts' input) are those of the keyspace.
    assert sum(s.value for s in sampled) >= 60
    share = sum(s.value for s in without) / sum(s.value for s in sampled)
    assert 0.1 <= share <= 0.25
    assert await exp.value("sparki_collector_success", target="cl", collector="ttl") == 1
