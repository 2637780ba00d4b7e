#!/usr/bin/env python3
"""MySQL benchmark: sparki-exporter beside Debian's prometheus-mysqld-exporter.

One run, one throwaway MariaDB (devstack/mysql.py: performance_schema on, a free
port in a temp dir, never the system server) holding 1,000 statement digests, and
both exporters watching it at the same time, each as its own user:

* ``sparki``          -- our exporter (``poll_interval: 1s``, far shorter than the
  default 15 s so the run samples many polls; default collectors and ``statements_top_n``);
* ``mysqld_exporter`` -- /usr/bin/prometheus-mysqld-exporter with its defaults plus
  ``--collect.perf_schema.eventsstatements`` (its digest collector, the one that
  gives what our statement histograms give), which queries the server on every scrape.

Scrapes are sequential HTTP GETs on keep-alive connections, round-robin over the two
exporters. The server cost of each is read per user from
performance_schema.events_statements_summary_by_user_by_event_name (statements and
server time) over the run, per scrape (anchor) or per poll (ours).

Results go to stdout and, unless ``--no-write``, to the ``## MySQL`` section of
docs/benchmarks.md (other sections are left alone).

Run from the repository root:  python bench/mysql_bench.py
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import docsection  # noqa: E402
from fixtures_core import free_port  # noqa: E402

from devstack.mysql import MONITOR_PASSWORD, MysqlServer  # noqa: E402

ANCHOR_BIN = "/usr/bin/prometheus-mysqld-exporter"
ANCHOR_PASSWORD = "anchor-pw"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## MySQL"
COST_SQL = (
    "SELECT USER, SUM(COUNT_STAR), SUM(SUM_TIMER_WAIT) FROM "
    "performance_schema.events_statements_summary_by_user_by_event_name "
    "WHERE USER IN ('sparki', 'anchor') GROUP BY USER"
)


class Exporter:
    def __init__(self, label: str, argv: list[str], port: int, log: Path) -> None:
        self.label, self.port, self.log = label, port, log
        self.proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        try:
            self.conn.request("GET", "/metrics")
            resp = self.conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            raise
        return resp.status, body, time.perf_counter() - start

    def stop(self) -> None:
        self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def series(body: bytes) -> int:
    return sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_digests(server: MysqlServer, count: int) -> None:
    """``count`` distinct digests in schema app (a different alias each), 3 calls each."""
    # Only integers are interpolated.
    statements = [f"SELECT v, id FROM t AS t{i} WHERE id = {i % 3}" for i in range(count)]  # noqa: S608
    for start in range(0, len(statements), 250):
        server.sql(*(statements[start : start + 250] * 3), database="app")


def cost(server: MysqlServer) -> dict[str, tuple[int, float]]:
    out = {}
    for line in server.sql(COST_SQL).splitlines():
        user, count, picos = line.split("\t")
        out[user] = (int(count), int(picos) / 1e12)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="sparki-mysql-bench-"))
    server = MysqlServer().start()
    exporters: list[Exporter] = []
    try:
        server.sql(
            f"CREATE USER 'anchor'@'%' IDENTIFIED BY '{ANCHOR_PASSWORD}'",
            "GRANT PROCESS, REPLICA MONITOR, SELECT ON *.* TO 'anchor'@'%'",
        )
        make_digests(server, args.digests)
        digests = int(
            server.sql(
                "SELECT COUNT(*) FROM performance_schema.events_statements_summary_by_digest"
            )
        )
        config = tmp / "sparki.yaml"
        config.write_text(
            "poll_interval: 1s\npoll_timeout: 0.8s\nlog: {level: warning}\n"
            f"mysql:\n  - name: bench\n    dsn: mysql://sparki@127.0.0.1:{server.port}/\n"
            f"    password: {MONITOR_PASSWORD}\n"
        )
        cnf = tmp / "my.cnf"
        cnf.write_text(
            f"[client]\nuser=anchor\npassword={ANCHOR_PASSWORD}\nhost=127.0.0.1\n"
            f"port={server.port}\n"
        )
        ours, theirs = free_port(), free_port()
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
                    f"127.0.0.1:{ours}",
                ],
                ours,
                tmp / "sparki.log",
            )
        )
        exporters.append(
            Exporter(
                "mysqld_exporter",
                [
                    ANCHOR_BIN,
                    f"--config.my-cnf={cnf}",
                    f"--web.listen-address=127.0.0.1:{theirs}",
                    "--collect.perf_schema.eventsstatements",
                ],
                theirs,
                tmp / "anchor.log",
            )
        )
        deadline = time.monotonic() + 60
        for exp in exporters:
            while True:
                if exp.proc.poll() is not None:
                    raise RuntimeError(f"{exp.label} exited: {exp.log.read_text()[-2000:]}")
                with contextlib.suppress(OSError, http.client.HTTPException):
                    status, body, _ = exp.get()
                    if status == 200 and (
                        exp.label != "sparki" or b"sparki_mysql_statement_info{" in body
                    ):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{exp.label} not ready")
                time.sleep(0.2)
        times: dict[str, list[float]] = {e.label: [] for e in exporters}
        last: dict[str, bytes] = {}
        for _ in range(args.warmup):
            for exp in exporters:
                exp.get()
        polls0 = time.monotonic()
        cost0 = cost(server)
        for _ in range(args.rounds):
            start = time.monotonic()
            for exp in exporters:
                status, body, took = exp.get()
                assert status == 200, exp.label
                times[exp.label].append(took * 1000)
                last[exp.label] = body
            time.sleep(max(0.0, args.gap - (time.monotonic() - start)))
        cost1 = cost(server)
        elapsed = time.monotonic() - polls0
        results: dict[str, Any] = {"digests": digests, "elapsed": elapsed}
        for exp, user, per in ((exporters[0], "sparki", elapsed), (exporters[1], "anchor", None)):
            t = times[exp.label]
            n = per if per is not None else len(t)  # sparki polls once a second
            d_count = cost1.get(user, (0, 0.0))[0] - cost0.get(user, (0, 0.0))[0]
            d_secs = cost1.get(user, (0, 0.0))[1] - cost0.get(user, (0, 0.0))[1]
            results[exp.label] = {
                "p50": statistics.median(t),
                "p95": pct(t, 0.95),
                "series": series(last[exp.label]),
                "bytes": len(last[exp.label]),
                "rss": rss_mib(exp.proc.pid),
                "statements": d_count / n,
                "server_ms": d_secs * 1000 / n,
            }
        results["load_before"] = load_before
        results["load_after"] = os.getloadavg()[0]
        results["server"] = server.sql("SELECT VERSION()").strip()
        anchor_version = subprocess.run(
            [ANCHOR_BIN, "--version"], capture_output=True, text=True, check=False
        )
        results["anchor"] = (anchor_version.stdout + anchor_version.stderr).split("\n")[0]
        return results
    finally:
        for exp in exporters:
            exp.stop()
        server.destroy()


def report(r: dict[str, Any], args: argparse.Namespace) -> str:
    ours, anchor = r["sparki"], r["mysqld_exporter"]

    def row(label: str, key: str, fmt: str = "{:.2f}") -> str:
        return f"| {label} | {fmt.format(ours[key])} | {fmt.format(anchor[key])} |"

    return "\n".join(
        [
            SECTION,
            "",
            f"Run on {dt.date.today()}: {platform.machine()}, {os.cpu_count()} CPUs shared with "
            f"other work (1-minute load {r['load_before']:.1f} before, {r['load_after']:.1f} "
            f"after), {r['server']} (throwaway server), anchor {r['anchor']}.",
            "",
            "Rerun from the repository root (under a minute; starts and destroys its own "
            "mariadbd, needs mariadb-server and prometheus-mysqld-exporter; `--no-write` "
            "leaves this file alone):",
            "",
            "```",
            "python bench/mysql_bench.py",
            "```",
            "",
            f"Scenario: {r['digests']:,} statement digests in "
            "performance_schema.events_statements_summary_by_digest, no other load. Ours "
            "with `poll_interval: 1s` and its defaults (`statements_top_n: 100`); "
            "mysqld_exporter with its defaults plus `--collect.perf_schema.eventsstatements` "
            "(top 250 digests), which queries the server on every scrape. "
            f"{args.rounds} rounds of sequential keep-alive scrapes, round-robin, one round at "
            f"most every {args.gap:g} s ({r['elapsed']:.0f} s measured). Server cost per "
            "user from events_statements_summary_by_user_by_event_name: per poll for ours "
            "(polls are off the scrape path), per scrape for the anchor.",
            "",
            "| | sparki | mysqld_exporter |",
            "|---|---:|---:|",
            row("scrape p50, ms", "p50"),
            row("scrape p95, ms", "p95"),
            row("series per scrape", "series", "{:,}"),
            row("bytes per scrape", "bytes", "{:,}"),
            row("RSS, MiB", "rss", "{:.1f}"),
            row("statements per poll / scrape", "statements", "{:.1f}"),
            row("server time per poll / scrape, ms", "server_ms"),
            "",
            f"Scrape p50 ratio sparki / mysqld_exporter: {ours['p50'] / anchor['p50']:.3f} "
            "(goal: at most 0.25).",
            "",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--gap", type=float, default=0.2, help="minimum seconds per round")
    p.add_argument("--digests", type=int, default=1000)
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args()
    if not os.path.exists(ANCHOR_BIN):
        print(f"missing {ANCHOR_BIN}: apt-get install prometheus-mysqld-exporter")
        return 2
    results = run(args)
    text = report(results, args)
    print(text)
    if not args.no_write:
        docsection.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
