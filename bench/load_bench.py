"""Load benchmarks: many scrapers, many targets, a long soak. Writes ``## Load`` in
docs/benchmarks.md (other sections are left alone).

Three scenarios, each against throwaway servers started here (a PostgreSQL cluster made
by initdb, a redis-server, a moto S3 server in its own process), all on loopback:

* ``scrapers``: 50 concurrent scrapers on ``/metrics`` for 60 s (gzip, as Prometheus
  asks), against an exporter with one target of each adapter: errors, p50/p99 latency.
* ``targets``: 100 targets of mixed adapters in one exporter (40 PostgreSQL, 40 Redis,
  20 S3) at a 5 s interval for 120 s: polls on schedule (intervals between successful
  polls as seen in ``sparki_last_poll_success_timestamp_seconds``), CPU, RSS.
* ``soak``: the 100-target exporter with a scrape every second for ``--soak-seconds``
  (default 1800): RSS sampled every 30 s; flat means the last third's mean is within a
  few percent of the middle third's.

Each scenario's results are kept in bench/results/load.json, so scenarios can be run
separately (the soak takes long) and the section always shows the latest of each::

    .venv/bin/python bench/load_bench.py                       # scrapers and targets, ~4 min
    .venv/bin/python bench/load_bench.py --only soak           # 30 min
    .venv/bin/python bench/load_bench.py --only soak --soak-seconds 600
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docsection  # noqa: E402

from devstack.postgres import PgCluster, make_primary  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Load"
RESULTS = ROOT / "bench" / "results" / "load.json"
BUCKET = "sparki-load"
ACCESS_KEY, SECRET_KEY = "AKIASPARKILOAD000001", "sparki-load-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- servers -----------------------------------------------------------------------------


class Servers:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="sparki-load-"))
        self.pg: PgCluster | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis_port = free_port()
        self.s3_port = free_port()

    def start(self) -> Servers:
        self.pg = make_primary(settings={"max_connections": "200"})
        self.pg.ensure_monitor_role()
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.procs.append(
            subprocess.Popen(
                [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.tmp), "--maxclients", "1000"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_http(f"http://127.0.0.1:{self.s3_port}/moto-api/", 60)
        import boto3

        boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.s3_port}",
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        ).create_bucket(Bucket=BUCKET)
        return self

    def config(self, pg: int, redis: int, s3: int, interval: str, timeout: str) -> str:
        assert self.pg is not None
        lines = [f"poll_interval: {interval}", f"poll_timeout: {timeout}", "postgres:"]
        lines += [
            f"  - {{name: pg-{i:03d}, dsn: '{self.pg.dsn(user='sparki_monitor')}'}}"
            for i in range(pg)
        ]
        lines.append("redis:")
        lines += [
            f"  - {{name: redis-{i:03d}, url: 'redis://127.0.0.1:{self.redis_port}'}}"
            for i in range(redis)
        ]
        lines.append("s3:")
        lines += [
            f"  - {{name: s3-{i:03d}, bucket: {BUCKET}, "
            f"endpoint_url: 'http://127.0.0.1:{self.s3_port}', region: us-east-1, "
            f"access_key_id: {ACCESS_KEY}, secret_access_key: {SECRET_KEY}}}"
            for i in range(s3)
        ]
        text = "\n".join(lines) + "\n"
        for section in ("postgres", "redis", "s3"):  # an empty section must be a list
            text = re.sub(rf"^{section}:\n(?!  - )", f"{section}: []\n", text, flags=re.M)
        return text

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
        if self.pg is not None:
            self.pg.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (loopback)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.2)


@contextlib.contextmanager
def exporter(servers: Servers, config: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    path = servers.tmp / f"sparki-{time.monotonic_ns()}.yml"
    path.write_text(config)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config", str(path),
         "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(servers.tmp / "exporter.log").open("ab"),
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 120)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- scenarios ---------------------------------------------------------------------------


async def _scrapers(port: int, count: int, seconds: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/metrics"
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sizes: list[int] = []
    end = time.monotonic() + seconds

    async def scraper() -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < end:
                start = time.perf_counter()
                try:
                    async with session.get(url, headers={"Accept-Encoding": "gzip"}) as resp:
                        body = await resp.read()
                        if resp.status != 200:
                            errors[f"HTTP {resp.status}"] = errors.get(f"HTTP {resp.status}", 0) + 1
                            continue
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - start)
                sizes.append(len(body))

    started = time.monotonic()
    await asyncio.gather(*(scraper() for _ in range(count)))
    elapsed = time.monotonic() - started
    return {
        "scrapers": count,
        "seconds": round(elapsed, 1),
        "requests": len(latencies) + sum(errors.values()),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(pct(latencies, 50) * 1000, 2),
        "p99_ms": round(pct(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2) if latencies else None,
        "bytes_gzip": int(pct([float(s) for s in sizes], 50)) if sizes else 0,
    }


def run_scrapers(servers: Servers, count: int, seconds: float) -> dict[str, Any]:
    with exporter(servers, servers.config(1, 1, 1, "15s", "5s")) as (proc, port):
        time.sleep(2)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        result = asyncio.run(_scrapers(port, count, seconds))
        result["exporter_cpu_pct"] = round(
            100 * (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0), 1
        )
        result["rss_mb"] = round(rss_mb(proc.pid), 1)
    return result


def success_times(port: int, timings: list[float] | None = None) -> dict[str, float]:
    start = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    if timings is not None:
        timings.append((time.perf_counter() - start) * 1000)
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "sparki_last_poll_success_timestamp_seconds":
            for s in fam.samples:
                out[f"{s.labels['adapter']}/{s.labels['target']}"] = s.value
    return out


def up_count(port: int) -> tuple[int, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    ups = [
        s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "sparki_up"
        for s in fam.samples
    ]
    return int(sum(ups)), len(ups)


def run_targets(servers: Servers, seconds: float, interval: float = 5.0) -> dict[str, Any]:
    config = servers.config(40, 40, 20, f"{interval:g}s", f"{interval * 0.8:g}s")
    with exporter(servers, config) as (proc, port):
        time.sleep(interval * 2)  # settle: first polls and their jitter
        seen: dict[str, list[float]] = {}
        rss: list[float] = []
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        end = t0 + seconds
        scrape_ms: list[float] = []
        while time.monotonic() < end:
            times = success_times(port, scrape_ms)
            for target, ts in times.items():
                history = seen.setdefault(target, [])
                if not history or history[-1] != ts:
                    history.append(ts)
            rss.append(rss_mb(proc.pid))
            time.sleep(1.0)
        cpu = cpu_seconds(proc.pid) - cpu0
        wall = time.monotonic() - t0
        up, total = up_count(port)
    gaps = [b - a for h in seen.values() for a, b in itertools.pairwise(h)]
    expected = wall / interval
    polls = [len(h) - 1 for h in seen.values()]
    return {
        "targets": total,
        "mix": "40 postgres, 40 redis, 20 s3",
        "interval_s": interval,
        "seconds": round(wall, 1),
        "up": up,
        "polls_per_target_expected": round(expected, 1),
        "polls_per_target_min": min(polls) if polls else 0,
        "polls_per_target_median": pct([float(p) for p in polls], 50),
        "gap_p50_s": round(pct(gaps, 50), 2),
        "gap_p99_s": round(pct(gaps, 99), 2),
        "gap_max_s": round(max(gaps), 2) if gaps else None,
        "late_share_pct": round(
            100 * sum(1 for g in gaps if g > interval * 1.5) / max(1, len(gaps)), 2
        ),
        "cpu_pct": round(100 * cpu / wall, 1),
        "rss_mb_max": round(max(rss), 1),
        "rss_mb_end": round(rss[-1], 1),
        "scrape_p50_ms": round(pct(scrape_ms, 50), 1),
    }


def run_soak(servers: Servers, seconds: float) -> dict[str, Any]:
    config = servers.config(40, 40, 20, "5s", "4s")
    samples: list[tuple[float, float]] = []
    errors = 0
    scrapes = 0
    with exporter(servers, config) as (proc, port):
        start = time.monotonic()
        next_sample = start
        while time.monotonic() - start < seconds:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                    resp.read()
                scrapes += 1
            except OSError:
                errors += 1
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - start, rss_mb(proc.pid)))
                next_sample += 30
            time.sleep(1.0)
        samples.append((time.monotonic() - start, rss_mb(proc.pid)))
        up, total = up_count(port)
    third = max(1, len(samples) // 3)
    middle = [r for _, r in samples[third : 2 * third]] or [samples[0][1]]
    last = [r for _, r in samples[2 * third :]]
    growth = (sum(last) / len(last)) / (sum(middle) / len(middle)) - 1
    return {
        "seconds": round(samples[-1][0]),
        "targets": total,
        "up_at_end": up,
        "scrapes": scrapes,
        "errors": errors,
        "rss_mb_first": round(samples[0][1], 1),
        "rss_mb_middle_mean": round(sum(middle) / len(middle), 1),
        "rss_mb_last_mean": round(sum(last) / len(last), 1),
        "rss_mb_max": round(max(r for _, r in samples), 1),
        "growth_last_vs_middle_pct": round(100 * growth, 2),
        "rss_samples": [[round(t), round(r, 1)] for t, r in samples],
    }


# --- the section ---------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {mem:.1f} GiB, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )


def section(results: dict[str, Any]) -> str:
    out = [
        SECTION,
        "",
        "Load and endurance of one exporter process, with its servers (a PostgreSQL "
        "cluster, a redis-server, a moto S3 server in its own process) and the load "
        "generator on the same machine: every number includes their competition for the "
        "CPUs. Rerun from the repository root (`--help` for the knobs; results of each "
        "scenario are kept in bench/results/load.json and this section shows the latest "
        "of each):",
        "",
        "```",
        ".venv/bin/python bench/load_bench.py                  # scrapers and targets, ~4 minutes",
        ".venv/bin/python bench/load_bench.py --only soak      # the 30-minute soak",
        "```",
        "",
    ]
    s = results.get("scrapers")
    if s:
        errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none"
        out += [
            f"### {s['scrapers']} concurrent scrapers",
            "",
            f"Run on {s['when']}: {s['machine']}. {s['scrapers']} clients, each on its own "
            "keep-alive connection, GET `/metrics` with `Accept-Encoding: gzip` back to back "
            f"for {s['seconds']:g} s; the exporter polls one target of each adapter.",
            "",
            "| requests | errors | requests/s | p50 | p99 | max | body (gzip) | exporter CPU "
            "| RSS |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| {s['requests']:,} | {errors} | {s['rps']:,} | {s['p50_ms']} ms | "
            f"{s['p99_ms']} ms | {s['max_ms']} ms | {s['bytes_gzip']:,} B | "
            f"{s['exporter_cpu_pct']}% of a core | {s['rss_mb']} MB |",
            "",
            "Latency is the client's, from sending the request to the last byte. The "
            "scrapers never pause, so this is a saturation test: the exporter serves from "
            "one event loop on one core, and at saturation latency is the queue "
            "(concurrency / throughput), not the cost of a scrape; the load generator "
            "shares the other CPU. Prometheus servers scrape every 15-60 s, so 50 of them "
            "ask for a few scrapes per second, three orders of magnitude below this.",
            "",
        ]
    t = results.get("targets")
    if t:
        out += [
            f"### {t['targets']} targets in one process",
            "",
            f"Run on {t['when']}: {t['machine']}. {t['mix']}, every target polled every "
            f"{t['interval_s']:g} s (timeout {t['interval_s'] * 0.8:g} s), observed for "
            f"{t['seconds']:g} s by reading `sparki_last_poll_success_timestamp_seconds` "
            "every second; a gap is the time between two successful polls of one target.",
            "",
            "| targets up | polls per target (expected / median / min) | gap p50 | gap p99 | "
            "gap max | gaps over 1.5 intervals | exporter CPU | RSS max | scrape p50 |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| {t['up']} / {t['targets']} | {t['polls_per_target_expected']} / "
            f"{t['polls_per_target_median']:g} / {t['polls_per_target_min']} | "
            f"{t['gap_p50_s']} s | {t['gap_p99_s']} s | {t['gap_max_s']} s | "
            f"{t['late_share_pct']}% | {t['cpu_pct']}% of a core | {t['rss_mb_max']} MB | "
            f"{t['scrape_p50_ms']} ms |",
            "",
            "Each poll's slot is jittered by ±5% of the interval, so gaps spread around "
            "the interval; a gap over 1.5 intervals would be a missed slot.",
            "",
        ]
    k = results.get("soak")
    if k:
        minutes = k["seconds"] / 60
        note = (
            ""
            if k["seconds"] >= 1800
            else f" This run was shortened to {minutes:.0f} minutes (the issue asks for 30)."
        )
        trend = ", ".join(
            f"{int(t // 60)} min: {r} MB"
            for t, r in k["rss_samples"][:: max(1, len(k["rss_samples"]) // 8)]
        )
        out += [
            "### Soak",
            "",
            f"Run on {k['when']}: {k['machine']}. The {k['targets']}-target exporter (5 s "
            f"interval) for {minutes:.0f} minutes with a scrape every second; RSS sampled "
            f"every 30 s.{note}",
            "",
            "| duration | scrapes | errors | targets up at end | RSS first | RSS middle third "
            "(mean) | RSS last third (mean) | RSS max | growth last vs middle |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {minutes:.0f} min | {k['scrapes']:,} | {k['errors']} | {k['up_at_end']} / "
            f"{k['targets']} | {k['rss_mb_first']} MB | {k['rss_mb_middle_mean']} MB | "
            f"{k['rss_mb_last_mean']} MB | {k['rss_mb_max']} MB | "
            f"{k['growth_last_vs_middle_pct']}% |",
            "",
            f"RSS over time: {trend}.",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["scrapers", "targets", "soak"], action="append")
    p.add_argument("--scrapers", type=int, default=50)
    p.add_argument("--scrape-seconds", type=float, default=60)
    p.add_argument("--target-seconds", type=float, default=120)
    p.add_argument("--soak-seconds", type=float, default=1800)
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args()
    which = args.only or ["scrapers", "targets"]
    results: dict[str, Any] = {}
    if RESULTS.exists():
        results = json.loads(RESULTS.read_text())
    servers = Servers().start()
    try:
        stamp = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}
        if "scrapers" in which:
            print("scrapers: running", flush=True)
            results["scrapers"] = {
                **run_scrapers(servers, args.scrapers, args.scrape_seconds),
                **stamp,
            }
            print(json.dumps(results["scrapers"]), flush=True)
        if "targets" in which:
            print("targets: running", flush=True)
            results["targets"] = {**run_targets(servers, args.target_seconds), **stamp}
            print(json.dumps(results["targets"]), flush=True)
        if "soak" in which:
            print(f"soak: running for {args.soak_seconds:g} s", flush=True)
            results["soak"] = {**run_soak(servers, args.soak_seconds), **stamp}
            print(json.dumps({k: v for k, v in results["soak"].items() if k != "rss_samples"}))
    finally:
        servers.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    if not args.no_write:
        docsection.write_section(SECTION, section(results))
        print(f"wrote the {SECTION} section of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
