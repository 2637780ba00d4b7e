#!/usr/bin/env python3
"""What the key collectors (ttl, streams) cost per poll on a 1-million-key Redis.

Issue 12's goal: the TTL conformance sample must cost under 5 ms per poll on a Redis
with a million keys. One run starts a private redis-server (never the system one),
fills it with 1,000,000 keys shaped like the platform's design (``session:<id>`` with
24 h TTLs, ``perm:<user>:<workspace>`` 15 min, ``ratelimit:<user>:<endpoint>`` 1 min,
pipeline and deployment status, temporary build state, project metadata, a share
without TTL, and build-log streams with consumer groups) through ``redis-cli --pipe``,
then times ``Collector.collect()`` of each collector over many polls, back to back,
on one connection as the exporter holds it (a NodeContext with a pipeline), for a few
budgets. The server's side comes from INFO commandstats (usec of the commands the
collector sent, per poll).

Results go to stdout and, unless ``--no-write``, to the ``## Redis key collectors``
section of docs/benchmarks.md (other sections are left alone).

Run from the repository root:  python bench/redis_ttl_bench.py
Not part of the test suite. Loopback only; the server is destroyed on every exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import docsection  # noqa: E402

from devstack.redis import RedisServer, async_connection, node_context  # noqa: E402
from exporter.adapters.redis import streams, ttl  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Redis key collectors"
DESIGN_POLICY = [
    {"pattern": "session:*", "max_ttl": "24h"},
    {"pattern": "perm:*:*", "max_ttl": "15m"},
    {"pattern": "ratelimit:*:*", "max_ttl": "1m"},
    {"pattern": "pipeline:*:status", "max_ttl": "5m"},
    {"pattern": "deployment:*:status", "max_ttl": "10m"},
    {"pattern": "build:*:state", "max_ttl": "3h"},
    {"pattern": "project:*", "max_ttl": "1h"},
    {"pattern": "build:*:logs"},
]
# (prefix template, share of the keyspace, TTL seconds or None)
MIX = [
    ("session:{i}", 0.30, 86400),
    ("perm:u{i}:w{j}", 0.20, 900),
    ("ratelimit:u{i}:e{j}", 0.15, 60),
    ("pipeline:{i}:status", 0.10, 300),
    ("deployment:{i}:status", 0.05, 600),
    ("build:{i}:state", 0.10, 10800),
    ("project:{i}", 0.05, 3600),
    ("cache:{i}", 0.05, None),  # no pattern: counted under other
]
NO_TTL_SHARE = 0.01  # of the patterned keys, written without a TTL (the leak to find)
STREAMS = 200  # build:<id>:logs streams, each with a consumer group


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n"]
    for a in args:
        b = a.encode()
        out.append(f"${len(b)}\r\n")
        out.append(a + "\r\n")
    return "".join(out).encode()


def fill(server: RedisServer, total: int) -> float:
    """``total`` keys of the design's shapes plus STREAMS streams, via redis-cli --pipe."""
    started = time.perf_counter()
    chunks: list[bytes] = []
    n = 0
    for template, share, seconds in MIX:
        count = int(total * share) if template != MIX[-1][0] else total - n - STREAMS
        for i in range(count):
            key = template.format(i=i, j=i % 97)
            if seconds is None or (i % int(1 / NO_TTL_SHARE)) == 0:
                chunks.append(_resp("SET", key, "x" * 24))
            else:
                chunks.append(_resp("SET", key, "x" * 24, "EX", str(seconds)))
        n += count
    for s in range(STREAMS):
        key = f"build:{s}:logs"
        for line in range(20):
            chunks.append(_resp("XADD", key, "*", "line", f"step {line} ok"))
        chunks.append(_resp("XGROUP", "CREATE", key, "archiver", "0"))
        chunks.append(
            _resp("XREADGROUP", "GROUP", "archiver", "a1", "COUNT", "5", "STREAMS", key, ">")
        )
    data = b"".join(chunks)
    done = subprocess.run(
        [server.cli, "-p", str(server.port), "--pipe"],
        input=data,
        capture_output=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli --pipe failed: {done.stdout[-500:]!r}")
    return time.perf_counter() - started


def commandstats(server: RedisServer) -> dict[str, tuple[int, int]]:
    """command -> (calls, usec)."""
    with server.client() as c:
        stats = c.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in stats.items()
        if isinstance(v, dict)
    }


class Config:
    """A target config carrying only what the collectors read."""

    def __init__(self, name: str, **fields: Any) -> None:
        self.name = name
        for k, v in fields.items():
            setattr(self, k, v)


async def measure(
    server: RedisServer, collector: Any, polls: int, own: tuple[str, ...]
) -> dict[str, Any]:
    conn = await async_connection(server)
    try:
        ctx = node_context(conn)
        for _ in range(5):  # warm-up: imports, regex compile, connection buffers
            await collector.collect(ctx)
        before = commandstats(server)
        times: list[float] = []
        cpu: list[float] = []
        part: Any = None
        for _ in range(polls):
            started, cpu_started = time.perf_counter(), time.process_time()
            part = await collector.collect(ctx)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        after = commandstats(server)
    finally:
        await conn.disconnect()
    calls = {c: after.get(c, (0, 0))[0] - before.get(c, (0, 0))[0] for c in own}
    usec = sum(after.get(c, (0, 0))[1] - before.get(c, (0, 0))[1] for c in own)
    times.sort()
    return {
        "p50": statistics.median(times) * 1000,
        "p95": times[int(0.95 * (len(times) - 1))] * 1000,
        "max": times[-1] * 1000,
        "cpu": statistics.mean(cpu) * 1000,
        "calls": {c: n / polls for c, n in calls.items() if n},
        "server_ms": usec / polls / 1000,
        "part": part,
    }


def fmt_calls(calls: dict[str, float]) -> str:
    # A | inside a table cell ends the cell, even in backticks: escape it.
    return ", ".join(f"`{c}` {n:.0f}".replace("|", "\\|") for c, n in sorted(calls.items()))


async def run(args: argparse.Namespace) -> str:
    server = RedisServer(kind=args.kind, settings=["maxmemory 0"]).start()
    try:
        filled = fill(server, args.keys)
        with server.client() as c:
            dbsize = int(c.dbsize())
            version = c.info("server").get("redis_version", "?")
        rows = []
        for budget in args.budgets:
            policy = ttl.TtlPolicy.model_validate(
                {"patterns": DESIGN_POLICY, "keys_per_poll": budget}
            )
            collector = ttl.Collector(Config("bench", ttl_policy=policy))
            result = await measure(server, collector, args.polls, ttl.OWN_COMMANDS)
            sampled = sum(p.sampled for p in result["part"].counts)
            result["keys"] = sampled / (args.polls + 5)
            result["budget"] = budget
            result["memory"] = policy.memory_keys_per_poll
            rows.append(result)
            print(
                f"ttl keys_per_poll={budget}: p50 {result['p50']:.2f} ms, p95 "
                f"{result['p95']:.2f} ms, cpu {result['cpu']:.2f} ms, "
                f"{result['keys']:.0f} keys/poll, server "
                f"{result['server_ms']:.2f} ms/poll",
                flush=True,
            )
        sconf = streams.StreamsConfig.model_validate({"patterns": ["build:*:logs"]})
        scollector = streams.Collector(Config("bench", streams=sconf))
        sresult = await measure(server, scollector, args.polls, streams.OWN_COMMANDS)
        tracked = sum(p.streams for p in sresult["part"].patterns)
        print(
            f"streams: p50 {sresult['p50']:.2f} ms, p95 {sresult['p95']:.2f} ms, cpu "
            f"{sresult['cpu']:.2f} ms, server "
            f"{sresult['server_ms']:.2f} ms/poll, {tracked} streams tracked",
            flush=True,
        )
    finally:
        server.destroy()
    return report(args, rows, sresult, filled, dbsize, version, tracked, sconf)


def report(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    sresult: dict[str, Any],
    filled: float,
    dbsize: int,
    version: str,
    tracked: int,
    sconf: Any,
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0]
    start_load = args.start_load
    default = ttl.TtlPolicy().keys_per_poll
    lines = [
        SECTION,
        "",
        f"Run on {now}: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{args.kind} server v={version} (throwaway server), 1-minute load average "
        f"{start_load:.1f} at the start and {load:.1f} at the end. Rerun from the "
        "repository root (about a minute; "
        "`--help` lists the knobs, `--no-write` leaves this file alone):",
        "",
        "```",
        "python bench/redis_ttl_bench.py",
        "```",
        "",
        f"Scenario: one redis-server filled with {dbsize:,} keys in {filled:.0f} s through "
        "`redis-cli --pipe`, shaped like the storage design (sessions 30 %, permissions "
        "20 %, rate limits 15 %, pipeline status 10 %, build state 10 %, deployment "
        "status, project metadata and unmatched cache keys 5 % each; 1 % of the "
        f"patterned keys without TTL; {STREAMS} `build:<id>:logs` streams with a consumer "
        "group and pending entries). The TTL policy is the design's (docs/redis.md). "
        f"Each line: {args.polls} polls of `collect()` back to back after 5 warm-up "
        "polls, on one connection with a pipeline, as the exporter holds it; the time "
        "is the client's wall time of one poll (SCAN, then one pipelined round trip of "
        "PTTL and MEMORY USAGE, then classification), the server time is INFO "
        "commandstats usec of those commands per poll, the exporter CPU the process time "
        "one poll used (what the poll costs whatever else the machine runs; wall times "
        "include waiting for the CPUs when other processes compete for them).",
        "",
        "| collector | keys/poll (budget) | p50 ms | p95 ms | max ms | exporter CPU ms/poll "
        "| server ms/poll | commands/poll |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mark = ", the default" if r["budget"] == default else ""
        lines.append(
            f"| ttl | {r['keys']:.0f} (budget {r['budget']}{mark}; MEMORY USAGE on "
            f"{r['memory']}) "
            f"| {r['p50']:.2f} | {r['p95']:.2f} | {r['max']:.2f} | {r['cpu']:.2f} "
            f"| {r['server_ms']:.2f} | {fmt_calls(r['calls'])} |"
        )
    lines.append(
        f"| streams | {sconf.scan_keys_per_poll} examined, {tracked} streams tracked "
        f"| {sresult['p50']:.2f} | {sresult['p95']:.2f} | {sresult['max']:.2f} "
        f"| {sresult['cpu']:.2f} | {sresult['server_ms']:.2f} | {fmt_calls(sresult['calls'])} |"
    )
    ok = [r for r in rows if r["budget"] == default]
    verdict = "The default budget was not measured."
    if ok:
        r = ok[0]
        cost = r["cpu"] + r["server_ms"]
        met = "holds" if cost < 5 else "is NOT met"
        verdict = (
            f"The goal (under 5 ms per poll on 1 million keys) {met} at the default "
            f"budget ({default} keys): exporter CPU {r['cpu']:.2f} ms plus server "
            f"{r['server_ms']:.2f} ms per poll (plus two loopback round trips), judged on "
            "those because they are the poll's own cost; the wall times, p50 "
            f"{r['p50']:.2f} ms and p95 {r['p95']:.2f} ms here, add the time the poll "
            "waited for a CPU, which on a shared machine is the other processes' doing."
        )
    full_pass = dbsize / default
    lines += [
        "",
        f"{verdict} At the default {default} keys per poll a full pass over "
        f"{dbsize:,} keys takes {full_pass:,.0f} polls ({full_pass * 15 / 3600:.1f} h at "
        "the default 15 s interval); the shares the alerts read are rates over a window, "
        f"so they need samples, not a full pass: {default * 60 // 15:,} keys a minute. "
        "The cost grows with the budget (the Python side, building and parsing the "
        "pipeline, dominates: the server's part is a fraction), not with the keyspace: "
        "SCAN's cost is per key returned.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 300])
    parser.add_argument("--kind", default="redis", help="redis (Debian's) or valkey")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    args.start_load = os.getloadavg()[0]
    section = asyncio.run(run(args))
    if not args.no_write:
        docsection.write_section(SECTION, section)
    print(section)


if __name__ == "__main__":
    main()
