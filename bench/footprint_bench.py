#!/usr/bin/env python3
"""Footprint benchmark: RSS of a PostgreSQL-only exporter beside postgres_exporter.

One throwaway PostgreSQL cluster (with pg_stat_statements), and in the same run:

* ``sparki`` -- this checkout, one ``postgres`` target with default settings except a
  1 s poll interval (so the run sees many polls);
* ``sparki (before)`` -- the same config on another checkout given with ``--before``
  (for instance the main branch), to show what a change did under equal conditions;
* ``postgres_exporter`` -- Debian's /usr/bin/prometheus-postgres-exporter with its
  default collectors.

Each is scraped once a second for ``--seconds`` (default 30) after it is ready; RSS
(VmRSS) and peak RSS (VmHWM) are read from /proc at the end. Results go to stdout
and, with --write, to the ``## Footprint`` section of docs/benchmarks.md.

Run from the repository root:

    .venv/bin/python bench/footprint_bench.py [--before ../main] [--write]

Loopback only; every wait is bounded; the processes and the cluster go on every exit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docsection  # noqa: E402

from devstack.exporter import exporter_argv  # noqa: E402
from devstack.postgres import PgCluster, free_port, make_primary  # noqa: E402

ANCHOR_BIN = "/usr/bin/prometheus-postgres-exporter"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Footprint"


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback)
        return bytes(resp.read())


def wait_up(url: str, needle: bytes, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if needle in get(url):
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} never showed {needle!r}")


def start_sparki(tmp: Path, cluster: PgCluster, label: str, checkout: Path) -> tuple[str, Any]:
    port = free_port()
    cfg = tmp / f"{label.replace(' ', '_')}.yml"
    cfg.write_text(
        "poll_interval: 1s\npoll_timeout: 900ms\nlog: {level: warning}\npostgres:\n"
        f"  - name: db\n    dsn: {cluster.dsn(user='sparki_monitor')}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    proc = subprocess.Popen(
        exporter_argv(cfg, port),
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / f"{port}.log").open("wb"),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return f"http://127.0.0.1:{port}/metrics", proc


def start_anchor(tmp: Path, cluster: PgCluster) -> tuple[str, Any]:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "DATA_SOURCE_NAME": cluster.dsn(user="pgexp_monitor") + "?sslmode=disable",
    }
    proc = subprocess.Popen(
        [ANCHOR_BIN, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "anchor.log").open("wb"),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return f"http://127.0.0.1:{port}/metrics", proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if not Path(ANCHOR_BIN).exists():
        print(f"{ANCHOR_BIN} not found: apt-get install prometheus-postgres-exporter")
        return 2
    cluster = make_primary()
    procs: dict[str, tuple[str, Any]] = {}
    try:
        cluster.ensure_monitor_role()
        cluster.sql("CREATE ROLE pgexp_monitor LOGIN IN ROLE pg_monitor")
        tmp = Path(tempfile.mkdtemp(prefix="sparki-footprint-"))
        procs["sparki"] = start_sparki(tmp, cluster, "sparki", ROOT)
        if args.before:
            procs["sparki (before)"] = start_sparki(tmp, cluster, "before", args.before.resolve())
        procs["postgres_exporter"] = start_anchor(tmp, cluster)
        deadline = time.monotonic() + 60
        for name, (url, _) in procs.items():
            needle = b"pg_up 1" if name == "postgres_exporter" else b'sparki_up{adapter="postgres"'
            wait_up(url, needle, deadline)
        end = time.monotonic() + args.seconds
        scrapes = 0
        while time.monotonic() < end:
            for url, _ in procs.values():
                get(url)
            scrapes += 1
            time.sleep(1)
        rows = {
            name: (status_kb(p.pid, "VmRSS") / 1024, status_kb(p.pid, "VmHWM") / 1024)
            for name, (_, p) in procs.items()
        }
        anchor_version = subprocess.run(
            [ANCHOR_BIN, "--version"], capture_output=True, text=True, timeout=10
        )
        version_line = (anchor_version.stdout + anchor_version.stderr).splitlines()[0]
    finally:
        for _, proc in procs.values():
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        cluster.destroy()
    anchor_rss = rows["postgres_exporter"][0]
    lines = [
        SECTION,
        "",
        f"Run on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with "
        "`.venv/bin/python bench/footprint_bench.py"
        f"{' --before CHECKOUT' if args.before else ''}`: "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, anchor {version_line}. "
        f"One PostgreSQL 15 cluster with pg_stat_statements; each exporter has one target on "
        f"it (ours: default settings, `poll_interval: 1s`; the anchor: default collectors) "
        f"and is scraped once a second for {args.seconds} s ({scrapes} scrapes) after its "
        f"first successful poll. RSS is VmRSS at the end, peak is VmHWM.",
        "",
        "| exporter | RSS, MB | peak RSS, MB | RSS / postgres_exporter's |",
        "|---|---|---|---|",
    ]
    for name, (rss, peak) in rows.items():
        lines.append(f"| {name} | {rss:.1f} | {peak:.1f} | {rss / anchor_rss:.2f}x |")
    lines += [
        "",
        "The aim of issue 15 is at most 4x postgres_exporter's RSS for a PostgreSQL-only "
        "config: "
        + ("met" if rows["sparki"][0] <= 4 * anchor_rss else "**not met**")
        + f" ({rows['sparki'][0]:.1f} MB vs {anchor_rss:.1f} MB). A PostgreSQL-only exporter "
        "imports neither redis-py nor boto3/botocore (adapters are imported only when the "
        "config names them); what remains is the Python runtime, aiohttp, pydantic and psycopg.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        docsection.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
