"""The one-command demo: a local storage stack, light load, and the exporter watching it.

``scripts/demo`` installs what is missing and runs this. Everything it starts lives in
one temporary directory and is stopped on Ctrl-C (or after ``--duration`` seconds),
leaving nothing running.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .postgres import PgCluster, free_port, make_primary


class Stack:
    """Starts parts in order and stops them in reverse, whatever happens."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="sparki-demo-"))
        self.base.chmod(0o755)  # servers run as their own users under it
        self.stops: list[Callable[[], None]] = []
        self.stop_event = threading.Event()
        self.incident = threading.Event()

    def on_stop(self, fn: Callable[[], None]) -> None:
        self.stops.append(fn)

    def close(self) -> None:
        self.stop_event.set()
        for fn in reversed(self.stops):
            with contextlib.suppress(Exception):
                fn()
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres(stack: Stack) -> tuple[PgCluster, dict[str, Any]]:
    pg = make_primary(base=stack.base / "postgres")
    stack.on_stop(pg.destroy)
    pg.ensure_monitor_role()
    pg.sql("CREATE ROLE app LOGIN")
    pg.sql("GRANT ALL ON SCHEMA public TO app", dbname="app")
    with pg.connect("app") as conn:
        conn.execute(b"SET ROLE app")
        conn.execute(
            b"CREATE TABLE builds (id bigserial PRIMARY KEY, project int, status text, "
            b"started timestamptz DEFAULT now())"
        )
        conn.execute(
            b"INSERT INTO builds (project, status) SELECT i % 50, 'ok' "
            b"FROM generate_series(1, 20000) i"
        )
        conn.execute(b"CREATE INDEX ON builds (project)")
    threading.Thread(target=postgres_load, args=(pg, stack), daemon=True).start()
    return pg, pg.target("demo-postgres")


def postgres_load(pg: PgCluster, stack: Stack) -> None:
    """A trickle of CI-platform-like queries; slow ones while an incident runs."""
    rng = random.Random(7)
    with pg.connect("app") as conn:
        conn.execute(b"SET ROLE app")
        while not stack.stop_event.is_set():
            project = rng.randrange(50)
            conn.execute(b"SELECT count(*) FROM builds WHERE project = %s", (project,))
            conn.execute(b"INSERT INTO builds (project, status) VALUES (%s, 'running')", (project,))
            if rng.random() < 0.1:
                conn.execute(b"SELECT pg_sleep(0.02)")
            if stack.incident.is_set():
                conn.execute(b"SELECT pg_sleep(0.15)")  # p95 over the 100 ms critical line
            stack.stop_event.wait(0.05)


def start_exporter(stack: Stack, config: dict[str, Any], port: int) -> subprocess.Popen[bytes]:
    path = stack.base / "sparki.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config",
            str(path),
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ]
    )

    def stop() -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    stack.on_stop(stop)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        time.sleep(0.2)
    raise RuntimeError("the exporter did not become ready within 30 s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the Sparki exporter against a local stack.")
    p.add_argument("--port", type=int, default=9840, help="exporter port (0: any free port)")
    p.add_argument(
        "--duration",
        type=float,
        default=0,
        help="stop by itself after this many seconds (0: run until Ctrl-C)",
    )
    p.add_argument(
        "--incident",
        action="store_true",
        help="start with an incident running (slow queries) so alerts fire",
    )
    args = p.parse_args(argv)

    stack = Stack()
    signal.signal(signal.SIGTERM, lambda *_: stack.stop_event.set())
    try:
        _, pg_target = start_postgres(stack)
        config: dict[str, Any] = {
            "poll_interval": "5s",
            "poll_timeout": "3s",
            "postgres": [pg_target],
        }
        port = args.port or free_port()
        start_exporter(stack, config, port)
        if args.incident:
            stack.incident.set()
        print(
            f"\nSparki storage exporter demo is running (files in {stack.base}):\n"
            f"  targets and their state  http://127.0.0.1:{port}/\n"
            f"  metrics                  http://127.0.0.1:{port}/metrics\n"
            "Press Ctrl-C to stop everything.\n",
            flush=True,
        )
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stack.stop_event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            stack.stop_event.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping...", flush=True)
        stack.close()
    print("stopped; nothing left running.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
