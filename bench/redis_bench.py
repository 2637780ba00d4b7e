#!/usr/bin/env python3
"""Redis benchmark: sparki-exporter beside Debian's prometheus-redis-exporter.

One run, one throwaway redis-server (7.x, on a free port in a temp dir, never the
system one), a light mixed workload from one client (about 20 command types, a few
hundred operations per second, a few slow Lua scripts), and both exporters watching
the same server at the same time:

* ``sparki``          -- our exporter (``poll_interval: 1s``, far shorter than the
  default 15 s so the run samples many polls; default ``commands_top_n``);
* ``redis_exporter``  -- /usr/bin/prometheus-redis-exporter with its defaults, which
  talks to Redis on every scrape.

Scrapes are sequential HTTP GETs on keep-alive connections, round-robin over the two
exporters, first without and then with gzip (as Prometheus asks). The run
then measures what each exporter costs Redis (commands and server time, from INFO
commandstats), each alone with the workload paused.

Results go to stdout and, unless ``--no-write``, to the ``## Redis`` section of
docs/benchmarks.md (other sections are left alone).

Run from the repository root:  .venv/bin/python bench/redis_bench.py
Not part of the test suite. Loopback only; every loop is bounded; subprocesses are
stopped and the server is destroyed on every exit path.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import docsection  # noqa: E402
from fixtures_core import free_port  # noqa: E402
from fixtures_redis import RedisServer  # noqa: E402

ANCHOR_BIN = "/usr/bin/prometheus-redis-exporter"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Redis"
SLOW_SCRIPT = (
    "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] "
    "while true do local n = redis.call('TIME') "
    "if n[1] * 1000000 + n[2] - s >= tonumber(ARGV[1]) then break end end return 1"
)
_POLL = re.compile(rb'^sparki_poll_duration_seconds\{adapter="redis"[^}]*\} (\S+)$', re.M)
_ANCHOR_POLL = re.compile(rb"^redis_exporter_last_scrape_duration_seconds (\S+)$", re.M)


class Aborted(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise Aborted(f"signal {signum}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in kB from /proc."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


class Exporter:
    """A subprocess serving /metrics on a loopback port, scraped over keep-alive."""

    def __init__(self, label: str, cmd: list[str], port: int, logfile: Path) -> None:
        self.label = label
        self.port = port
        self.logfile = logfile
        self._log = logfile.open("wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.conn: http.client.HTTPConnection | None = None
        self.plain: list[float] = []
        self.gzipped: list[float] = []
        self.polls: set[float] = set()
        self.errors = 0

    def get(self, gzip_ok: bool, timeout: float = 15.0) -> tuple[int, bytes, float]:
        headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            start = time.perf_counter()
            try:
                self.conn.request("GET", "/metrics", headers=headers)
                resp = self.conn.getresponse()
                body = resp.read()
                return resp.status, body, time.perf_counter() - start
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-15:])
        return ""


def workload_command(step: int) -> tuple[Any, ...]:
    """The step-th command of a cache-like mix: sessions, permissions, logs, rate limits."""
    k = f"user:{step % 1200}"  # a sixth of the lookups miss
    field = str(step % 50)
    mix: list[tuple[Any, ...]] = [
        ("GET", k),
        ("SET", k, "y" * 64, "EX", 300),
        ("INCR", "counter"),
        ("HSET", "perm:1", field, "rw"),
        ("HGET", "perm:1", field),
        ("LPUSH", "log:build", "line"),
        ("LTRIM", "log:build", 0, 999),
        ("EXPIRE", k, 600),
        ("EXISTS", k),
        ("SADD", "sessions", k),
        ("ZADD", "rate", step, k),
        ("ZREMRANGEBYRANK", "rate", 0, -1001),
        ("MGET", k, "user:1"),
        ("TTL", k),
        ("STRLEN", k),
        ("HGETALL", "perm:1"),
        ("SCARD", "sessions"),
        ("LLEN", "log:build"),
        ("TYPE", k),
    ]
    return mix[step % len(mix)]


class Workload:
    """A light, mixed command stream from one named client, until stopped."""

    def __init__(self, server: RedisServer, ops_per_second: float) -> None:
        self.server = server
        self.period = 1.0 / ops_per_second
        self.stop_event = threading.Event()
        self.paused = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ops = 0

    def _run(self) -> None:
        with self.server.client(client_name="bench-load") as c:
            c.mset({f"user:{i}": "x" * 64 for i in range(1000)})
            step = 0
            while not self.stop_event.is_set():
                if self.paused.is_set():
                    self.stop_event.wait(0.05)
                    continue
                c.execute_command(*workload_command(step))
                if step % 2000 == 0:
                    c.eval(SLOW_SCRIPT, 0, 3000)  # a 3 ms script now and then
                step += 1
                self.ops += 1
                self.stop_event.wait(self.period)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)


def commandstats(admin: Any) -> dict[str, tuple[int, int]]:
    """Per command: (calls, usec) from INFO commandstats, on an already open connection."""
    stats = admin.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in stats.items()}


def stats_delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> tuple[int, int, dict[str, int]]:
    """Calls and usec added between two readings; the second reading's INFO not counted."""
    per_cmd: dict[str, int] = {}
    usec = 0
    for cmd, (calls, micros) in after.items():
        c0, u0 = before.get(cmd, (0, 0))
        if calls - c0:
            per_cmd[cmd] = calls - c0
            usec += micros - u0
    per_cmd["info"] = per_cmd.get("info", 0) - 1  # the first reading itself
    if per_cmd["info"] <= 0:
        del per_cmd["info"]
    return sum(per_cmd.values()), usec, per_cmd


def machine() -> dict[str, str]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    anchor = subprocess.run(
        [ANCHOR_BIN, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    version = re.search(r"Exporter (\S+)", anchor.stdout + anchor.stderr)
    server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis": server.stdout.split(" sha=")[0].strip(),
        "anchor": f"prometheus-redis-exporter {version.group(1) if version else '?'}",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="sparki-redis-bench-"))
    server = RedisServer().start()
    exporters: list[Exporter] = []
    workload = Workload(server, args.ops)
    try:
        workload.start()
        config = tmp / "sparki.yaml"
        config.write_text(
            "poll_interval: 1s\npoll_timeout: 0.8s\nlog: {level: warning}\n"
            f"redis:\n  - name: bench\n    url: redis://127.0.0.1:{server.port}\n"
        )
        ours_port, anchor_port = free_port(), free_port()
        exporters.append(
            Exporter(
                "sparki",
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    "--config",
                    str(config),
                    "--web.listen-address",
                    f"127.0.0.1:{ours_port}",
                ],
                ours_port,
                tmp / "sparki.log",
            )
        )
        exporters.append(
            Exporter(
                "redis_exporter",
                [
                    ANCHOR_BIN,
                    f"--redis.addr=redis://127.0.0.1:{server.port}",
                    f"--web.listen-address=127.0.0.1:{anchor_port}",
                ],
                anchor_port,
                tmp / "anchor.log",
            )
        )
        deadline = time.monotonic() + 30
        for exp in exporters:
            while True:
                if exp.proc.poll() is not None:
                    raise RuntimeError(f"{exp.label} exited:\n{exp.log_tail()}")
                with contextlib.suppress(OSError, http.client.HTTPException):
                    status, body, _ = exp.get(False, timeout=2)
                    if status == 200 and (exp.label != "sparki" or b"sparki_redis_memory" in body):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{exp.label} not ready:\n{exp.log_tail()}")
                time.sleep(0.2)
        time.sleep(3)  # a few polls, so the command histogram has its series
        cpu0 = {e.label: cpu_seconds(e.proc.pid) for e in exporters}
        conns0 = int(server.client().info("stats")["total_connections_received"])
        started = time.monotonic()
        for phase, gzip_ok, rounds in (
            ("plain", False, args.rounds),
            ("gzip", True, args.rounds // 2),
        ):
            for i in range(args.warmup + rounds):
                round_start = time.monotonic()
                for exp in exporters:
                    status, body, took = exp.get(gzip_ok)
                    if status != 200:
                        exp.errors += 1
                        continue
                    if i < args.warmup:
                        continue
                    (exp.gzipped if gzip_ok else exp.plain).append(took)
                    if not gzip_ok:
                        found = (_POLL if exp.label == "sparki" else _ANCHOR_POLL).search(body)
                        if found:
                            exp.polls.add(float(found.group(1)))
                time.sleep(max(0.0, args.gap - (time.monotonic() - round_start)))
            del phase
        elapsed = time.monotonic() - started
        cpu = {e.label: (cpu_seconds(e.proc.pid) - cpu0[e.label]) / elapsed for e in exporters}
        anchor_scrapes = sum(args.warmup + r for r in (args.rounds, args.rounds // 2))
        conns = int(server.client().info("stats")["total_connections_received"]) - conns0

        # What each exporter costs Redis, measured alone: INFO commandstats around N
        # anchor scrapes with ours stopped (SIGSTOP), then around our polls alone.
        admin = server.client()
        admin.ping()  # connect (and HELLO) before the first reading
        workload.paused.set()
        time.sleep(0.5)
        ours_proc, anchor = exporters[0].proc, exporters[1]
        os.kill(ours_proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.2)
            before = commandstats(admin)
            for _ in range(args.cost_samples):
                anchor.get(False)
                time.sleep(0.05)
            anchor_cost = stats_delta(before, commandstats(admin))
        finally:
            os.kill(ours_proc.pid, signal.SIGCONT)
        before = commandstats(admin)
        time.sleep(args.cost_samples)  # one poll a second
        ours_cost = stats_delta(before, commandstats(admin))
        polls = max(1, ours_cost[2].get("latency|histogram", 0))  # one per poll
        workload.paused.clear()
        admin.close()

        results: dict[str, Any] = {
            "machine": machine(),
            "elapsed": elapsed,
            "ops": workload.ops,
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        }
        for exp in exporters:
            _, body, _ = exp.get(False)
            _, zbody, _ = exp.get(True)
            status = proc_status(exp.proc.pid)
            results[exp.label] = {
                "p50": pct(exp.plain, 0.5) * 1000,
                "p95": pct(exp.plain, 0.95) * 1000,
                "max": max(exp.plain) * 1000,
                "gz_p50": pct(exp.gzipped, 0.5) * 1000,
                "gz_p95": pct(exp.gzipped, 0.95) * 1000,
                "series": count_series(body),
                "bytes": len(body),
                "gz_bytes": len(zbody),
                "poll_p50": statistics.median(exp.polls) * 1000 if exp.polls else float("nan"),
                "poll_p95": pct(sorted(exp.polls), 0.95) * 1000 if exp.polls else float("nan"),
                "polls_seen": len(exp.polls),
                "rss": status.get("VmRSS", 0) / 1024,
                "hwm": status.get("VmHWM", 0) / 1024,
                "cpu": cpu[exp.label] * 100,
                "errors": exp.errors,
            }
        results["sparki"]["commands"] = ours_cost[0] / polls
        results["sparki"]["server_us"] = ours_cost[1] / polls
        results["sparki"]["mix"] = {k: v / polls for k, v in sorted(ours_cost[2].items())}
        results["redis_exporter"]["commands"] = anchor_cost[0] / args.cost_samples
        results["redis_exporter"]["server_us"] = anchor_cost[1] / args.cost_samples
        results["redis_exporter"]["mix"] = {
            k: v / args.cost_samples for k, v in sorted(anchor_cost[2].items())
        }
        results["anchor_conns_per_scrape"] = conns / anchor_scrapes
        return results
    finally:
        workload.stop()
        for exp in exporters:
            exp.stop()
        server.destroy()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    m = results["machine"]
    ours, anchor = results["sparki"], results["redis_exporter"]

    def row(label: str, key: str, fmt: str = "{:.2f}") -> str:
        return f"| {label} | {fmt.format(ours[key])} | {fmt.format(anchor[key])} |"

    ratio = ours["p50"] / anchor["p50"]
    lines = [
        SECTION,
        "",
        f"Run on {m['date']}: {m['cpu']}, {m['memory']}, {m['os']}, Python {m['python']}, "
        f"{m['redis']} (throwaway server), anchor {m['anchor']}. 1-minute load average "
        f"{results['load_before']:.1f} before and {results['load_after']:.1f} after the run"
        + (
            " (**other work was running: tail latencies are pessimistic**)."
            if results["load_before"] > (os.cpu_count() or 1) / 2  # "after" includes us
            else "."
        ),
        "",
        "Rerun from the repository root (about a minute; starts and destroys its own "
        "redis-server, needs redis-server and prometheus-redis-exporter; `--help` lists the "
        "knobs, `--no-write` leaves this file alone):",
        "",
        "```",
        ".venv/bin/python bench/redis_bench.py",
        "```",
        "",
        f"Scenario: one redis-server, a light mixed workload from one client (19 command "
        f"types, about {args.ops:g} operations/s, {results['ops']:,} in all, a 3 ms Lua script "
        f"every 2,000 operations, 1,000 keys). Both exporters watch the same server at the "
        f"same time: ours with `poll_interval: 1s` (the default is 15 s) and default "
        f"`commands_top_n`, Debian's redis_exporter with its defaults (it queries Redis on "
        f"every scrape). {args.rounds} rounds of plain and {args.rounds // 2} rounds of gzip "
        f"scrapes after {args.warmup} warm-up rounds each, sequential GETs on keep-alive "
        f"connections, round-robin over both exporters, one round at most every "
        f"{args.gap:g} s ({results['elapsed']:.0f} s measured).",
        "",
        "| | sparki | redis_exporter |",
        "|---|---:|---:|",
        row("scrape p50, ms", "p50"),
        row("scrape p95, ms", "p95"),
        row("scrape max, ms", "max"),
        row("scrape p50 (gzip), ms", "gz_p50"),
        row("scrape p95 (gzip), ms", "gz_p95"),
        row("series per scrape", "series", "{:,}"),
        row("bytes per scrape", "bytes", "{:,}"),
        row("bytes per scrape (gzip)", "gz_bytes", "{:,}"),
        f"| poll p50 / p95, ms | {ours['poll_p50']:.2f} / {ours['poll_p95']:.2f} "
        f"({ours['polls_seen']} polls) | {anchor['poll_p50']:.2f} / {anchor['poll_p95']:.2f} "
        "(per scrape) |",
        f"| commands sent to Redis per poll / scrape | {ours['commands']:.1f} per poll | "
        f"{anchor['commands']:.1f} per scrape |",
        f"| Redis time per poll / scrape (commandstats usec), µs | {ours['server_us']:.0f} | "
        f"{anchor['server_us']:.0f} |",
        f"| connections opened per scrape | 0 (one long-lived) | "
        f"{results['anchor_conns_per_scrape']:.2f} |",
        row("RSS after run, MB", "rss", "{:.1f}"),
        row("peak RSS, MB", "hwm", "{:.1f}"),
        row("exporter CPU during run, % of one core", "cpu", "{:.1f}"),
        row("HTTP errors", "errors", "{}"),
        "",
        "How to read it: scrape latency is the client's time for one full GET. Poll "
        "duration is `sparki_poll_duration_seconds` for ours (distinct values seen) and "
        "`redis_exporter_last_scrape_duration_seconds` for the anchor, whose poll is its "
        "scrape. Commands and Redis time are INFO commandstats deltas with the workload "
        f"paused, measured for each exporter alone: {args.cost_samples} anchor scrapes while "
        f"ours is stopped (SIGSTOP), then {args.cost_samples} s of our polls. RSS is VmRSS / "
        "VmHWM from /proc after the run.",
        "",
        "Commands per poll / scrape: ours "
        + ", ".join(f"`{k}` {v:g}" for k, v in ours["mix"].items())
        + "; redis_exporter "
        + ", ".join(f"`{k}` {v:g}" for k, v in anchor["mix"].items())
        + (
            " (this version does not read LATENCY HISTOGRAM: no per-command latency at all)."
            if "latency|histogram" not in anchor["mix"]
            else "."
        ),
        "",
        "Ratios (ours / anchor): "
        f"scrape p50 {ratio:.2f}x ({1 / ratio:.1f} times faster), "
        f"scrape p95 {ours['p95'] / anchor['p95']:.2f}x, "
        f"gzip p50 {ours['gz_p50'] / anchor['gz_p50']:.2f}x, "
        f"poll p50 vs scrape-time poll {ours['poll_p50'] / anchor['poll_p50']:.2f}x, "
        f"bytes {ours['bytes'] / anchor['bytes']:.2f}x, "
        f"series {ours['series'] / anchor['series']:.2f}x, "
        f"RSS {ours['rss'] / anchor['rss']:.2f}x.",
        "",
        f"Aim of issue 3, scrape p50 at most half of the anchor's: "
        f"{'met' if ratio <= 0.5 else '**not met**'} ({ours['p50']:.2f} ms vs "
        f"{anchor['p50']:.2f} ms). Our RSS is the Python runtime with aiohttp, pydantic and "
        "three drivers loaded; the anchor is a static Go binary.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=300, help="plain scrape rounds (gzip: half)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--gap", type=float, default=0.1, help="minimum seconds per round")
    p.add_argument("--ops", type=float, default=300, help="workload operations per second")
    p.add_argument(
        "--cost-samples", type=int, default=10, help="scrapes / seconds for the Redis cost"
    )
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args()
    for tool in (ANCHOR_BIN, "/usr/bin/redis-server"):
        if not os.path.exists(tool):
            print(f"missing {tool}: apt-get install redis-server prometheus-redis-exporter")
            return 2
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        results = run(args)
    except Aborted as exc:
        print(f"aborted: {exc}")
        return 1
    text = report(results, args)
    print(text)
    if not args.no_write:
        docsection.write_section(SECTION, text)
        print(f"wrote the {SECTION} section of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
