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

from .exporter import exporter_argv
from .postgres import PgCluster, free_port, make_primary
from .promstack import Alertmanager, Prometheus, Webhook

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    """Starts parts in order and stops them in reverse, whatever happens."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="sparki-demo-"))
        self.base.chmod(0o755)  # servers run as their own users under it
        self.stops: list[Callable[[], None]] = []
        self.stop_event = threading.Event()
        self.incident = threading.Event()
        self.after_incident: list[Callable[[], None]] = []
        # What each part's load does during --incident, for the line that announces it.
        self.incident_notes: list[str] = []

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
    return pg, pg.target("postgres")


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


def start_redis(stack: Stack) -> Any:
    from .redis import RedisServer

    server = RedisServer(
        settings=["maxmemory 32mb", "maxmemory-policy allkeys-lru"], base=stack.base / "redis"
    )
    server.start()
    stack.on_stop(server.destroy)
    stack.after_incident.append(lambda: server.client().flushall())  # the build logs expire
    threading.Thread(target=redis_load, args=(server, stack), daemon=True).start()
    return server


def redis_load(server: Any, stack: Stack) -> None:
    """Sessions and permission checks, mostly hits; during an incident, memory fills up
    and a slow server-side script runs."""
    from .redis import SlowScript

    rng = random.Random(11)
    client = server.client()
    blob = "x" * 20_000
    i = 0
    slow: SlowScript | None = None
    while not stack.stop_event.is_set():
        user = rng.randrange(500)
        client.set(f"session:{user}", "token", ex=3600)
        perm = f"perm:{user}:{rng.randrange(20)}"
        if client.get(perm) is None:
            client.set(perm, "rw", ex=900)
        if stack.incident.is_set():
            for _ in range(20):
                client.set(f"buildlog:{i}", blob)
                i += 1
            if slow is None:
                slow = SlowScript(client, 0.025)
            slow()
        stack.stop_event.wait(0.02)


def start_memcached(stack: Stack) -> Any:
    from .memcached import MemcachedServer

    server = MemcachedServer(memory_mb=16, max_connections=256, base=stack.base).start()
    stack.on_stop(server.destroy)
    stack.after_incident.append(lambda: server.command(b"flush_all\r\n"))  # caches drop
    threading.Thread(target=memcached_load, args=(server, stack), daemon=True).start()
    return server


# An artifact's value: with its key and item header it just fits a 21,696-byte chunk of
# memcached's slab classes (-f 1.25), so a page holds 48 of them with little waste.
ARTIFACT_BYTES = 21_600


def memcached_load(server: Any, stack: Stack) -> None:
    """Rendered pages and API responses cached, mostly hits; during an incident, build
    artifacts are cached too and fill the node's memory past SparkiMemcachedMemoryHigh's
    80 % (about 90 %). The node is 16 MB: memcached hands out memory by 1 MB pages per
    slab class, and the pages and the canary's classes keep one page each, so on an 8 MB
    node the artifacts could fill only 6 pages (76 %, measured) and the alert never
    fired."""
    import socket

    rng = random.Random(13)
    i = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        reader = sock.makefile("rb")

        def call(data: bytes, until: bytes) -> None:
            sock.sendall(data)
            while reader.readline() not in (until, b""):
                pass

        while not stack.stop_event.is_set():
            key = b"page:%d" % rng.randrange(300)
            call(b"get %s\r\n" % key, b"END\r\n")
            call(b"set %s 0 300 %d\r\n%s\r\n" % (key, 2000, b"p" * 2000), b"STORED\r\n")
            if stack.incident.is_set():
                for _ in range(20):
                    blob = b"set artifact:%d 0 0 %d\r\n%s\r\n" % (
                        i,
                        ARTIFACT_BYTES,
                        b"a" * ARTIFACT_BYTES,
                    )
                    call(blob, b"STORED\r\n")
                    i += 1
            stack.stop_event.wait(0.02)


def start_mysql(stack: Stack) -> Any:
    """A private MariaDB with performance_schema on and a small max_connections (20), so
    the incident's held connections cross the shipped 80 % line."""
    from .mysql import MysqlServer

    server = MysqlServer(extra=("--max-connections=20",)).start()
    stack.on_stop(server.destroy)
    threading.Thread(target=mysql_load, args=(server, stack), daemon=True).start()
    return server


def mysql_load(server: Any, stack: Stack) -> None:
    """A few queries a second; during an incident, 16 sessions sit on connections (a
    leaking pool), 85 % of max_connections with the exporter's own, then go away."""
    held: list[subprocess.Popen[bytes]] = []
    while not stack.stop_event.is_set():
        with contextlib.suppress(Exception):
            server.sql("SELECT COUNT(*) FROM information_schema.tables")
        if stack.incident.is_set() and not held:
            held = [
                subprocess.Popen(
                    [*server.client_args(), "-e", "SELECT SLEEP(3600)"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(16)
            ]
        elif not stack.incident.is_set() and held:
            for proc in held:
                proc.kill()
                proc.wait(10)
            held = []
        stack.stop_event.wait(0.5)
    for proc in held:
        proc.kill()
        proc.wait(10)


def mysql_password() -> str:
    from .mysql import MONITOR_PASSWORD

    return str(MONITOR_PASSWORD)


def start_s3(stack: Stack) -> Any:
    from .s3 import MotoServer

    server = MotoServer(bucket="sparki-artifacts").start()
    stack.on_stop(server.stop)
    server.create_bucket(server.bucket)
    threading.Thread(target=s3_load, args=(server, stack), daemon=True).start()
    return server


def s3_load(server: Any, stack: Stack) -> None:
    s3 = server.client("s3")
    i = 0
    while not stack.stop_event.is_set():
        key = f"artifacts/{i % 50}/build.tar.gz"
        s3.put_object(Bucket=server.bucket, Key=key, Body=b"x" * 100_000)
        s3.get_object(Bucket=server.bucket, Key=key)["Body"].read()
        i += 1
        stack.stop_event.wait(2)


def start_etcd(stack: Stack) -> dict[str, str]:
    """A single etcd member (a CI platform's service config and locks live there)."""
    from .etcd import EtcdMember

    member = EtcdMember(stack.base / "etcd").start()
    stack.on_stop(member.destroy)
    threading.Thread(target=etcd_load, args=(member, stack), daemon=True).start()
    return {"ETCD_HOST": "127.0.0.1", "ETCD_PORT": str(member.client_port)}


def etcd_load(member: Any, stack: Stack) -> None:
    """Runners read their config and renew a lease-like key, a couple of times a second."""
    rng = random.Random(17)
    while not stack.stop_event.is_set():
        with contextlib.suppress(Exception):
            member.put(f"/ci/runners/runner-{rng.randrange(20)}", f"alive {time.time():.0f}")
            member.get(f"/ci/config/project-{rng.randrange(50)}")
        stack.stop_event.wait(0.5)


NATS_STREAM, NATS_CONSUMER = "BUILDS", "indexer"


def start_nats(stack: Stack) -> dict[str, str]:
    """NATS with JetStream: build events go to a work-queue stream, an indexer drains it.
    During an incident the indexer stops, so its backlog grows (SparkiNatsConsumerFallingBehind)
    and is drained when the incident ends."""
    import asyncio

    from .nats import NatsServer

    server = NatsServer(stack.base / "nats").start()
    stack.on_stop(server.destroy)

    async def setup() -> None:
        import nats
        from nats.js.api import RetentionPolicy

        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(
            name=NATS_STREAM,
            subjects=["builds.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            max_msgs=200_000,
        )
        await js.pull_subscribe("builds.>", NATS_CONSUMER, stream=NATS_STREAM)
        await nc.close()

    asyncio.run(setup())
    stack.incident_notes.append("the NATS indexer stops draining its stream")
    threading.Thread(target=nats_load, args=(server, stack), daemon=True).start()
    return {
        "NATS_HOST": "127.0.0.1",
        "NATS_PORT": str(server.port),
        "NATS_MONITOR_PORT": str(server.monitor_port),
    }


def nats_load(server: Any, stack: Stack) -> None:
    """About 20 build events a second, fetched and acknowledged by the indexer; while an
    incident runs the indexer fetches nothing (1000 pending within a minute)."""
    import asyncio

    async def run() -> None:
        import nats
        import nats.errors

        nc = await nats.connect(server.url, name="demo-builds")
        try:
            js = nc.jetstream()
            sub = await js.pull_subscribe("builds.>", NATS_CONSUMER, stream=NATS_STREAM)
            i = 0
            while not stack.stop_event.is_set():
                for _ in range(2):
                    await js.publish(f"builds.project{i % 50}", b'{"status":"ok"}')
                    i += 1
                if not stack.incident.is_set():
                    try:
                        msgs = await sub.fetch(100, timeout=0.1)
                    except nats.errors.TimeoutError:
                        msgs = []
                    for msg in msgs:
                        await msg.ack()
                await asyncio.sleep(0.1)
        finally:
            await nc.close()

    with contextlib.suppress(Exception):
        asyncio.run(run())


def start_badger(stack: Stack) -> dict[str, str]:
    """An edge agent's build cache: a Go host embedding Badger v2 (built once from
    Debian's golang-go and Badger source), writing ``build:<id>:output`` entries with
    the design's 3 h TTL and serving expvar; the exporter watches it as a sidecar would,
    through the directory and the host's /debug/vars.

    Ten 1 KiB entries a second: about 36 MB an hour, well under the growth alert's
    512 MiB an hour, so the quiet demo stays quiet."""
    from .badger import BadgerHost

    host = BadgerHost(stack.base / "badger", rate=10.0, value_size=1024).start()
    stack.on_stop(host.stop)
    return {
        "LSM_DIRECTORY": str(host.directory),
        "LSM_ENGINE": "badger",
        "LSM_EXPVAR_URL": host.expvar_url,
    }


def start_exporter(stack: Stack, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """The exporter on deploy/sparki.yml, the file docker-compose uses too."""
    import os

    proc = subprocess.Popen(
        exporter_argv(ROOT / "deploy" / "sparki.yml", port),
        env={**os.environ, **env},
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


def now() -> str:
    """The wall-clock time a line is printed, as a pager or chat shows it."""
    return time.strftime("%H:%M:%S")


def print_pages(webhook: Webhook, stack: Stack) -> None:
    """Show every notification Alertmanager sends, as a pager or chat would."""
    seen = 0
    while not stack.stop_event.is_set():
        alerts = webhook.alerts()
        for receiver, alert in alerts[seen:]:
            lab = alert["labels"]
            print(
                f"{now()} [{receiver:5}] {alert['status'].upper():8} {lab.get('alertname')} "
                f"severity={lab.get('severity')} target={lab.get('target')}: "
                f"{alert['annotations'].get('summary', '')}",
                flush=True,
            )
        seen = len(alerts)
        stack.stop_event.wait(1)


def incident(stack: Stack, after: float, duration: float) -> None:
    if stack.stop_event.wait(after):
        return
    what = ", ".join(
        [
            "slow queries, Redis and Memcached memory filling, MySQL connections held",
            *stack.incident_notes,
        ]
    )
    print(f"{now()} *** incident: {what} for {duration:g}s ***", flush=True)
    stack.incident.set()
    if stack.stop_event.wait(duration):
        return
    stack.incident.clear()
    for fn in stack.after_incident:
        with contextlib.suppress(Exception):
            fn()
    # The 5 minute rate windows empty, then keep_firing_for (cut to 90 s here) runs out.
    print(f"{now()} *** incident over: alerts resolve within about 7 minutes ***", flush=True)


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
        help="30 s after start, cause an incident (slow queries, Redis and Memcached memory "
        "filling, slow Redis scripts, MySQL connections held, a NATS consumer that stops "
        "draining) so alerts fire, then end it so they resolve",
    )
    p.add_argument("--incident-seconds", type=float, default=180)
    p.add_argument(
        "--no-prometheus", action="store_true", help="run only the servers and the exporter"
    )
    args = p.parse_args(argv)

    stack = Stack()
    signal.signal(signal.SIGTERM, lambda *_: stack.stop_event.set())
    try:
        pg, _ = start_postgres(stack)
        redis_server = start_redis(stack)
        s3 = start_s3(stack)
        memcached = start_memcached(stack)
        mysql = start_mysql(stack)
        # Parts that only hand the exporter their environment: a new one is a
        # start_<name>(stack) -> env function added here and a block in deploy/sparki.yml.
        env: dict[str, str] = {}
        for start in (start_etcd, start_nats, start_badger):
            env.update(start(stack))
        port = args.port or free_port()
        start_exporter(
            stack,
            {
                **env,
                "PG_HOST": "127.0.0.1",
                "PG_PORT": str(pg.port),
                "REDIS_HOST": "127.0.0.1",
                "REDIS_PORT": str(redis_server.port),
                "S3_BUCKET": s3.bucket,
                "S3_ENDPOINT_URL": s3.endpoint_url,
                "S3_ACCESS_KEY": s3.access_key,
                "S3_SECRET_KEY": s3.secret_key,
                "MEMCACHED_HOST": "127.0.0.1",
                "MEMCACHED_PORT": str(memcached.port),
                "MYSQL_HOST": "127.0.0.1",
                "MYSQL_PORT": str(mysql.port),
                "MYSQL_USER": "sparki",
                "MYSQL_PASSWORD": mysql_password(),
            },
            port,
        )
        urls = [
            f"  targets and their state  http://127.0.0.1:{port}/",
            f"  metrics                  http://127.0.0.1:{port}/metrics",
        ]
        if not args.no_prometheus:
            webhook = Webhook()
            stack.on_stop(webhook.stop)
            am = Alertmanager(
                stack.base,
                ROOT / "deploy/alertmanager/alertmanager.yml",
                webhook.url,
                group_wait="5s",
                group_interval="30s",
            )
            stack.on_stop(am.stop)
            # The shipped rules, with every `for` cut to 30 s so alerts show in minutes.
            prom = Prometheus(
                stack.base,
                [f"127.0.0.1:{port}"],
                sorted((ROOT / "rules").glob("*.rules.yml")),
                alertmanager=am.address,
                scrape_interval="5s",
                evaluation_interval="5s",
                for_seconds=30,
            )
            stack.on_stop(prom.stop)
            threading.Thread(target=print_pages, args=(webhook, stack), daemon=True).start()
            # Debian's Prometheus 2.42 ships only the classic UI (under /classic/), and
            # its Alertmanager no UI at all: print what answers on this machine.
            urls += [
                f"  Prometheus alerts        {prom.url}/classic/alerts",
                f"  Prometheus targets       {prom.url}/classic/targets",
                f"  Prometheus queries       {prom.url}/classic/graph",
                f"  Alertmanager alerts      amtool --alertmanager.url={am.url} alert query",
                f"  Alertmanager API         {am.url}/api/v2/alerts",
            ]
        if args.incident:
            threading.Thread(
                target=incident, args=(stack, 30, args.incident_seconds), daemon=True
            ).start()
        print(
            f"\nSparki storage exporter demo is running (files in {stack.base}):\n"
            + "\n".join(urls)
            + "\n"
            "Pages and chat notifications are printed here as they arrive.\n"
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
