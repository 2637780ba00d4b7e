#!/usr/bin/env python3
"""PostgreSQL poll time against the network round trip to the server.

An exporter rarely runs on the database host: between them there is a round trip of a
fraction of a millisecond (same zone) to a few (another zone), paid once per
statement that waits for its answer. This benchmark puts a TCP proxy that delays each
direction by half the chosen round trip between the exporter and a throwaway
PostgreSQL, and reads ``sparki_poll_duration_seconds`` with every default collector on.
How the poll time grows with the round trip says how many round trips a poll waits for.

``--compare PATH`` runs a second exporter from another checkout (say, the commit before
a change) beside this one, through the same proxy, in the same run.

Run from the repository root:  .venv/bin/python bench/pg_rtt_bench.py [--compare PATH]
Not part of the test suite; loopback only; the cluster is destroyed on every exit path.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import docsection  # noqa: E402
import yaml  # noqa: E402
from fixtures_core import free_port  # noqa: E402

from devstack.exporter import exporter_argv  # noqa: E402
from devstack.postgres import make_primary  # noqa: E402

SECTION = "## PostgreSQL round trips"
_DURATION = re.compile(r"^sparki_poll_duration_seconds\{[^}]*\} (\S+)$", re.M)
_SUCCESS = re.compile(r"^sparki_last_poll_success_timestamp_seconds\{[^}]*\} (\S+)$", re.M)


class DelayProxy:
    """Forwards TCP to ``upstream``, each chunk after ``one_way`` seconds, in order."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.one_way = 0.0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> DelayProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)
        return self

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.one_way:
                        await asyncio.sleep(self.one_way)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def start_exporter(checkout: Path, tmp: Path, label: str, dsn: str) -> tuple[Any, int]:
    port = free_port()
    cfg = tmp / f"{label}.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "poll_interval": "1s",
                "poll_timeout": "0.9s",
                "postgres": [{"name": "pg", "dsn": dsn}],
            }
        )
    )
    log = open(tmp / f"{label}.log", "wb")
    proc = subprocess.Popen(
        exporter_argv(cfg, port), cwd=checkout, stdout=log, stderr=subprocess.STDOUT
    )
    return proc, port


def read_poll(port: int) -> tuple[float, float] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
    except OSError:
        return None
    d, s = _DURATION.search(body), _SUCCESS.search(body)
    return (float(s.group(1)), float(d.group(1))) if d and s else None


def measure(ports: dict[str, int], proxy: DelayProxy, seconds: float) -> dict[str, Any]:
    """Poll durations per exporter (one per distinct poll) and bursts per poll."""
    polls: dict[str, dict[float, float]] = {label: {} for label in ports}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for label, port in ports.items():
            got = read_poll(port)
            if got is not None:
                polls[label][got[0]] = got[1]
        time.sleep(0.25)
    out: dict[str, Any] = {}
    for label, seen in polls.items():
        values = sorted(seen.values())
        out[label] = {
            "p50": statistics.median(values) * 1000 if values else float("nan"),
            "p95": values[min(len(values) - 1, int(0.95 * len(values)))] * 1000
            if values
            else float("nan"),
            "n": len(values),
        }
    return out


def commit(checkout: Path) -> str:
    """The checkout's commit, short, for the record."""
    out = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown commit"


def round_trip(dsn: str) -> float:
    """The round trip through the proxy as a client sees it: median ``SELECT 1``, ms."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        times = []
        for _ in range(30):
            start = time.perf_counter()
            conn.execute(b"SELECT 1").fetchall()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--delay-ms",
        type=float,
        nargs="+",
        default=[0.0, 0.5, 1.0, 2.0],
        help="added delay each way (asyncio timers round it up to whole milliseconds: the "
        "round trip is measured, not assumed)",
    )
    p.add_argument("--seconds", type=float, default=40.0, help="measured per round trip")
    p.add_argument("--compare", type=Path, help="a second checkout to run beside this one")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()

    cluster = make_primary()
    proxy = DelayProxy(cluster.port).start()
    procs: list[Any] = []
    results: dict[float, dict[str, Any]] = {}
    try:
        cluster.ensure_monitor_role()
        # 300 statements for pg_stat_statements to hold (a select list of 1 to 300
        # constants each: constants and aliases do not make a statement of their own).
        for i in range(1, 301):
            cluster.sql("SELECT " + ", ".join(["1"] * i), "app")
        dsn = f"host=127.0.0.1 port={proxy.port} user=sparki_monitor dbname=postgres"
        tmp = Path(tempfile.mkdtemp(prefix="sparki-rtt-"))
        checkouts = {"this checkout": ROOT}
        if args.compare:
            checkouts["--compare"] = args.compare.resolve()
        ports = {}
        for label, checkout in checkouts.items():
            proc, port = start_exporter(checkout, tmp, label.replace(" ", "_"), dsn)
            procs.append(proc)
            ports[label] = port
        time.sleep(5)  # connected and past the first (baseline) polls
        for delay in args.delay_ms:
            proxy.one_way = delay / 1000.0
            time.sleep(2)
            rtt = round_trip(dsn)
            results[rtt] = measure(ports, proxy, args.seconds)
            print(f"{rtt:.2f} ms", results[rtt], flush=True)
        polls = {label: min(r[label]["n"] for r in results.values()) for label in ports}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        proxy.stop()
        cluster.destroy()

    lines = [
        f"| round trip | {' | '.join(f'{label}: poll p50 / p95' for label in ports)} |",
        "|---|" + "---|" * len(ports),
    ]
    for rtt, res in results.items():
        cells = [f"{res[label]['p50']:.1f} / {res[label]['p95']:.1f} ms" for label in ports]
        lines.append(f"| {rtt:.2f} ms | {' | '.join(cells)} |")
    first, last = min(results), max(results)
    if last > first:
        slopes = [
            (results[last][label]["p50"] - results[first][label]["p50"]) / (last - first)
            for label in ports
        ]
        cells = [f"{s:.1f}" for s in slopes]
        lines.append(f"| poll ms per ms of round trip | {' | '.join(cells)} |")
    text = "\n".join(
        [
            SECTION,
            "",
            f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
            "`.venv/bin/python bench/pg_rtt_bench.py"
            + (f" --compare <checkout of {commit(args.compare)}>`" if args.compare else "`")
            + f" (this checkout: {commit(ROOT)}). One exporter per checkout, every default "
            "collector, `poll_interval: 1s`, "
            f"at least {min(polls.values())} polls per line, through a proxy that delays "
            "each direction; the first column is the round trip a client measures through it "
            "(median of `SELECT 1`). The last line is how many milliseconds a poll gains per "
            "millisecond of round trip: about the number of round trips it waits for.",
            "",
            *lines,
            "",
        ]
    )
    print(text)
    if not args.no_write:
        docsection.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
