"""Paging end to end: real incidents on real servers reach a pager through real
Prometheus and Alertmanager, with the shipped thresholds, expressions and routing.

Only timing is shortened: scrape and evaluation every 2 s, every ``for`` 10 s, and
Alertmanager's group waits of a second or two. Several incidents run side by side on
separate targets, so the whole story (fire, inhibit, resolve) takes a few minutes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from fixtures_core import free_port, wait_until
from fixtures_pg import PgCluster, make_primary
from fixtures_redis import RedisServer
from fixtures_s3 import MotoServer

from devstack.exporter import exporter_argv
from devstack.promstack import Alertmanager, Prometheus, Webhook
from devstack.redis import SlowScript

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def wait(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    transient: tuple[type[BaseException], ...] = (OSError,),
) -> Any:
    """fixtures_core.wait_until at a one-second pace, retrying only ``transient`` errors
    (a server still starting refuses the connection): a broken check fails at once."""
    return wait_until(predicate, timeout, 1.0, retry_on=transient, what=what)


def exporter_samples(port: int, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name`` in one scrape of the exporter."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = []
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
            out.append((labels, float(match.group(2))))
    return out


def exporter_value(port: int, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for lab, v in exporter_samples(port, name)
        if all(lab.get(k) == want for k, want in labels.items())
    )


def wait_fresh_polls(port: int, targets: list[str], polls: int = 2) -> None:
    """Until every target has had ``polls`` successful polls from now on."""
    name = "sparki_last_poll_success_timestamp_seconds"

    def stamps() -> dict[str, float]:
        return {lab["target"]: v for lab, v in exporter_samples(port, name) if "target" in lab}

    seen = {t: [stamps().get(t, 0.0)] for t in targets}

    def advanced() -> bool:
        now = stamps()
        for t in targets:
            if now.get(t, 0.0) > seen[t][-1]:
                seen[t].append(now[t])
        return all(len(v) > polls for v in seen.values())

    wait(advanced, 60, f"{polls} fresh polls of {targets}")


def point_standby_at(standby: PgCluster, port: int) -> None:
    """Reconnect the standby's WAL receiver to ``port`` (a closed one stops it)."""
    standby.sql(
        f"ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={port} "
        "user=postgres application_name=standby1 connect_timeout=2'"
    )
    standby.sql("SELECT pg_reload_conf()")


def pause_postgres(cluster: PgCluster, signal_name: str) -> None:
    """SIGSTOP (hang) or SIGCONT the postmaster and every backend of ``cluster``."""
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False, timeout=10
    ).stdout.split()
    for target in [pid, *map(int, children)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, getattr(signal, signal_name))


class Load:
    """Background loops that stop when told; each loop is one thread."""

    def __init__(self) -> None:
        self.stops: list[threading.Event] = []
        self.threads: list[threading.Thread] = []

    def run(self, fn: Callable[[threading.Event], None]) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=fn, args=(stop,), daemon=True)
        thread.start()
        self.stops.append(stop)
        self.threads.append(thread)
        return stop

    def close(self) -> None:
        for s in self.stops:
            s.set()
        for t in self.threads:
            t.join(10)


@dataclass
class Stack:
    base: Path
    pg_crit: PgCluster
    pg_warn: PgCluster
    standby: PgCluster
    redis_crit: RedisServer
    redis_warn: RedisServer
    s3: MotoServer
    webhook: Webhook
    alertmanager: Alertmanager
    prometheus: Prometheus
    exporter: subprocess.Popen[bytes]
    exporter_port: int
    load: Load
    held: list[psycopg.Connection] = field(default_factory=list)


def hold_connections(cluster: PgCluster, count: int) -> list[psycopg.Connection]:
    return [psycopg.connect(cluster.dsn(dbname="app"), autocommit=True) for _ in range(count)]


def fill_redis(server: RedisServer, ratio: float) -> None:
    """Write keys until used_memory / maxmemory reaches ``ratio``."""
    client = server.client()
    maxmemory = int(client.config_get("maxmemory")["maxmemory"])
    value = "x" * 10_000
    i = 0
    while client.info("memory")["used_memory"] < maxmemory * ratio:
        client.set(f"fill:{ratio}:{i}", value)
        i += 1


def seed_cloudwatch(s3: MotoServer, written: set[dt.datetime]) -> None:
    """Request and storage metrics as AWS publishes them for the bucket, minute by minute.

    Called in a loop: each call adds the minutes that have passed since the last one (and
    every minute of the last 40 after the server lost them), so the exporter's counters
    keep growing as they would against CloudWatch.
    """
    cw = s3.client("cloudwatch")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    req_dims = [
        {"Name": "BucketName", "Value": s3.bucket},
        {"Name": "FilterId", "Value": "EntireBucket"},
    ]
    data = []
    minutes = [now - dt.timedelta(minutes=m) for m in range(1, 40)]
    for ts in (m for m in minutes if m not in written):
        for name, value in (
            ("AllRequests", 100),
            ("GetRequests", 60),
            ("PutRequests", 30),
            ("4xxErrors", 2),
            ("5xxErrors", 1),
            ("BytesDownloaded", 5e6),
            ("BytesUploaded", 2e6),
            ("FirstByteLatency", 20),
            ("TotalRequestLatency", 35),
        ):
            data.append(
                {
                    "MetricName": name,
                    "Dimensions": req_dims,
                    "Timestamp": ts,
                    "Value": value,
                    "Unit": "Count",
                }
            )
    if not written:
        for days in (1, 2):
            ts = now - dt.timedelta(days=days)
            data.append(
                {
                    "MetricName": "BucketSizeBytes",
                    "Timestamp": ts,
                    "Value": 50e9,
                    "Dimensions": [
                        {"Name": "BucketName", "Value": s3.bucket},
                        {"Name": "StorageType", "Value": "StandardStorage"},
                    ],
                }
            )
            data.append(
                {
                    "MetricName": "NumberOfObjects",
                    "Timestamp": ts,
                    "Value": 1234,
                    "Dimensions": [
                        {"Name": "BucketName", "Value": s3.bucket},
                        {"Name": "StorageType", "Value": "AllStorageTypes"},
                    ],
                }
            )
    for i in range(0, len(data), 20):
        cw.put_metric_data(Namespace="AWS/S3", MetricData=data[i : i + 20])
    written.update(minutes)


def cloudwatch_feed(s3: MotoServer) -> Callable[[threading.Event], None]:
    """Keeps CloudWatch publishing while the test runs; starts over after a restart."""

    def loop(stop: threading.Event) -> None:
        written: set[dt.datetime] = set()
        while not stop.is_set():
            try:
                if (
                    written
                    and not s3.client("cloudwatch").list_metrics(Namespace="AWS/S3")["Metrics"]
                ):
                    written.clear()  # the server restarted and lost everything
                seed_cloudwatch(s3, written)
            except Exception:  # the server is stopped on purpose for a while
                written.clear()
            stop.wait(5)

    return loop


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="sparki-e2e-"))
    parts: list[Callable[[], None]] = []
    load = Load()
    try:
        # max_connections 43 with 3 reserved: 40 usable, so 39 is 97.5 % and 34 is 85 %.
        pg_settings = {"max_connections": "43"}
        pg_crit = make_primary(settings=pg_settings)
        parts.append(pg_crit.destroy)
        pg_warn = make_primary(settings=pg_settings)
        parts.append(pg_warn.destroy)
        standby = PgCluster(settings=pg_settings).init_standby(pg_warn).start()
        parts.append(standby.destroy)
        pg_warn.ensure_monitor_role()
        # A slot nobody consumes: the retained-WAL panel has a line (far below any alert).
        pg_warn.sql("SELECT pg_create_physical_replication_slot('spare', true)")
        redis_crit = RedisServer(settings=["maxmemory 8mb", "maxmemory-policy noeviction"])
        redis_crit.start()
        parts.append(redis_crit.destroy)
        redis_warn = RedisServer(settings=["maxmemory 8mb", "maxmemory-policy noeviction"])
        redis_warn.start()
        parts.append(redis_warn.destroy)
        s3 = MotoServer().start()
        parts.append(s3.stop)
        s3.create_bucket(s3.bucket)
        load.run(cloudwatch_feed(s3))

        webhook = Webhook()
        parts.append(webhook.stop)
        # group_wait 5 s (30 s shipped): long enough that a warning which went pending one
        # evaluation before its critical is still muted when its group is first flushed,
        # as it is in production, where a level crossed within group_wait never pages.
        am = Alertmanager(
            base, ROOT / "deploy/alertmanager/alertmanager.yml", webhook.url, group_wait="5s"
        )
        parts.append(am.stop)

        config = {
            "poll_interval": "2s",
            "poll_timeout": "1500ms",
            "postgres": [
                pg_crit.target("pg-crit"),
                pg_warn.target("pg-warn", expected_standbys=1),
                {"name": "pg-standby", "dsn": standby.dsn(user="sparki_monitor")},
                {"name": "pg-gone", "dsn": f"postgresql://x@127.0.0.1:{free_port()}/x"},
            ],
            "redis": [
                redis_crit.target("redis-crit"),
                redis_warn.target("redis-warn"),
                {"name": "redis-gone", "url": f"redis://127.0.0.1:{free_port()}/0"},
            ],
            "s3": [
                s3.target(
                    "s3-main",
                    cloudwatch={
                        "enabled": True,
                        "endpoint_url": s3.endpoint_url,
                        "delay": "2m",
                        "interval": "10s",
                        "lookback": "1h",
                        "storage_interval": "10s",
                    },
                )
            ],
        }
        cfg = base / "sparki.yml"
        cfg.write_text(yaml.safe_dump(config))
        port = free_port()
        log = (base / "exporter.log").open("wb")
        exporter = subprocess.Popen(
            exporter_argv(cfg, port),
            stdout=log,
            stderr=log,
        )
        parts.append(lambda: (exporter.terminate(), exporter.wait(10)))
        try:
            wait(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz").status == 200,
                30,
                "exporter ready",
            )
        except AssertionError:
            raise AssertionError((base / "exporter.log").read_text()[-3000:]) from None

        rule_files = sorted((ROOT / "rules").glob("*.rules.yml"))
        prom = Prometheus(
            base, [f"127.0.0.1:{port}"], rule_files, alertmanager=am.address, for_seconds=10
        )
        parts.append(prom.stop)
        yield Stack(
            base,
            pg_crit,
            pg_warn,
            standby,
            redis_crit,
            redis_warn,
            s3,
            webhook,
            am,
            prom,
            exporter,
            port,
            load,
        )
    finally:
        load.close()  # before the servers go, so no loop sees them vanish
        for stop in reversed(parts):
            with contextlib.suppress(Exception):
                stop()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def pg_statements(cluster: PgCluster, sql: str) -> Callable[[threading.Event], None]:
    def loop(stop: threading.Event) -> None:
        with cluster.connect("app") as conn:
            while not stop.is_set():
                conn.execute(sql.encode())

    return loop


def redis_loop(server: RedisServer, fn: Callable[[Any], None]) -> Callable[[threading.Event], None]:
    def loop(stop: threading.Event) -> None:
        client = server.client()
        while not stop.is_set():
            fn(client)

    return loop


def until_stopped(fn: Callable[[], None]) -> Callable[[threading.Event], None]:
    def loop(stop: threading.Event) -> None:
        while not stop.is_set():
            fn()

    return loop


def labels_of(alert: dict[str, Any]) -> dict[str, str]:
    return dict(alert["labels"])


def test_incidents_page_inhibit_and_resolve(stack: Stack) -> None:
    hook, load = stack.webhook, stack.load
    # Permission checks and session reads all along: hits, and misses for unknown keys.
    load.run(
        redis_loop(stack.redis_warn, lambda c: (c.get("perm:1"), c.get("perm:x"), time.sleep(0.05)))
    )
    stack.redis_warn.client().set("perm:1", "rw")
    # Baselines first: statements must be seen once before they are observed.
    wait_fresh_polls(stack.exporter_port, ["pg-crit", "pg-warn", "redis-crit", "redis-warn"])
    # The dead man's switch beats from the start.
    wait(lambda: hook.find("SparkiWatchdog"), 120, "the Watchdog heartbeat")
    assert {recv for recv, _ in hook.find("SparkiWatchdog")} == {"heartbeat"}

    # --- cause every incident -------------------------------------------------------------
    slow_pg = load.run(pg_statements(stack.pg_crit, "SELECT pg_sleep(0.15)"))
    band_pg = load.run(pg_statements(stack.pg_warn, "SELECT pg_sleep(0.07)"))
    stack.held += hold_connections(stack.pg_crit, 38)  # + the exporter's own = 39 of 40
    stack.held += hold_connections(stack.pg_warn, 33)  # + exporter + load = 35 of 40
    fill_redis(stack.redis_crit, 0.965)
    fill_redis(stack.redis_warn, 0.85)
    slow_script = SlowScript(stack.redis_crit.client(), 0.025)
    slow_redis = load.run(until_stopped(slow_script))
    # Some successful canaries, then the storage goes away.
    wait(
        lambda: (
            exporter_value(
                stack.exporter_port, "sparki_s3_probes_total", target="s3-main", operation="put"
            )
            >= 3
        ),
        60,
        "three successful canary rounds",
    )
    stack.s3.stop()

    expected = [
        ("SparkiPostgresStatementLatencyHigh", "pg-crit", "critical", "pager"),
        ("SparkiPostgresStatementLatencyHigh", "pg-warn", "warning", "chat"),
        ("SparkiPostgresConnectionsHigh", "pg-crit", "critical", "pager"),
        ("SparkiPostgresConnectionsHigh", "pg-warn", "warning", "chat"),
        ("SparkiRedisMemoryHigh", "redis-crit", "critical", "pager"),
        ("SparkiRedisMemoryHigh", "redis-warn", "warning", "chat"),
        ("SparkiRedisCommandLatencyHigh", "redis-crit", "critical", "pager"),
        ("SparkiTargetDown", "s3-main", "critical", "pager"),
        ("SparkiTargetDown", "pg-gone", "critical", "pager"),
        ("SparkiTargetDown", "redis-gone", "critical", "pager"),
    ]
    for name, target, severity, receiver in expected:
        found = wait(
            lambda n=name, t=target, s=severity: hook.find(n, target=t, severity=s),
            240,
            f"{name} {severity} for {target}",
        )
        recv, alert = found[0]
        assert recv == receiver, f"{name}/{target} went to {recv}"
        ann = alert["annotations"]
        assert re.match(r"^https?://[^/]+/.+#[a-z0-9]+$", ann["runbook_url"]), ann
        assert target in ann.get("description", "") or target in ann.get("summary", "")

    # The S3 outage pages once: the failing canary fires in Prometheus, but the
    # target-down critical of the same target holds it back.
    wait(
        lambda: [
            a
            for a in stack.prometheus.alerts()
            if a["labels"]["alertname"] == "SparkiS3CanaryFailing"
            and a["labels"].get("severity") == "critical"
            and a["state"] == "firing"
        ],
        240,
        "the canary critical firing in Prometheus",
    )
    wait(
        lambda: am_alerts(stack.alertmanager, "SparkiS3CanaryFailing", "s3-main", "critical"),
        60,
        "the canary critical in Alertmanager",
    )
    for alert in am_alerts(stack.alertmanager, "SparkiS3CanaryFailing", "s3-main", "critical"):
        assert alert["status"]["state"] == "suppressed", alert["status"]
    assert hook.find("SparkiS3CanaryFailing", target="s3-main") == []
    # Nothing else paged: every page is one of the expected incidents.
    paged = {
        (a["labels"]["alertname"], a["labels"].get("target"))
        for recv, a in hook.alerts()
        if recv == "pager" and a["status"] == "firing"
    }
    assert paged <= {(n, t) for n, t, _, r in expected if r == "pager"}, paged

    # Inhibition: while the critical fires, the warning of the same alert and target is
    # firing in Prometheus but never reaches a receiver.
    for name, target in (
        ("SparkiPostgresStatementLatencyHigh", "pg-crit"),
        ("SparkiPostgresConnectionsHigh", "pg-crit"),
        ("SparkiRedisMemoryHigh", "redis-crit"),
    ):
        firing = [
            a
            for a in stack.prometheus.alerts()
            if a["labels"]["alertname"] == name
            and a["labels"].get("target") == target
            and a["state"] == "firing"
        ]
        assert {a["labels"]["severity"] for a in firing} == {"critical", "warning"}, firing
        assert hook.find(name, target=target, severity="warning") == []
        state = am_alert(stack.alertmanager, name, target, "warning")["status"]
        assert state["state"] == "suppressed" and state["inhibitedBy"], state

    # --- hang pg-crit while its latency critical fires -----------------------------------
    # Its polls time out, the exporter drops its series, and a critical must stay firing
    # all along: the latency critical (keep_firing_for) until SparkiTargetDown's critical
    # has taken over. (That the latency alert outlives its vanished data by
    # keep_firing_for is proven in the promtool scenarios, which can wait out the
    # 5 minute rate window this suite has no time for.)
    def pg_crit_criticals() -> set[str]:
        return {
            a["labels"]["alertname"]
            for a in stack.prometheus.alerts()
            if a["labels"].get("target") == "pg-crit"
            and a["labels"].get("severity") == "critical"
            and a["state"] == "firing"
        }

    assert "SparkiPostgresStatementLatencyHigh" in pg_crit_criticals()
    pause_postgres(stack.pg_crit, "SIGSTOP")
    # Meanwhile pg-warn's standby loses its WAL receiver: replication stopped pages, and
    # the primary misses its expected standby, although that standby's lag series is gone.
    point_standby_at(stack.standby, free_port())
    stack.pg_warn.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
    replication_pages = [
        ("SparkiPostgresReplicationStopped", "pg-standby"),
        ("SparkiPostgresStandbyMissing", "pg-warn"),
    ]
    try:
        wait(
            lambda: (
                [
                    v
                    for lab, v in exporter_samples(stack.exporter_port, "sparki_up")
                    if lab.get("target") == "pg-crit"
                ]
                == [0.0]
            ),
            60,
            "pg-crit polls failing",
        )
        down_paged = False
        end = time.monotonic() + 60
        while time.monotonic() < end or not down_paged:
            assert time.monotonic() < end + 120, "SparkiTargetDown critical never paged"
            assert pg_crit_criticals(), "no critical firing for the hung pg-crit"
            down_paged = down_paged or bool(
                hook.find("SparkiTargetDown", target="pg-crit", severity="critical")
            )
            time.sleep(2)
        assert hook.find("SparkiTargetDown", target="pg-crit", severity="critical")[0][0] == (
            "pager"
        )
        for name, target in replication_pages:
            found = wait(
                lambda n=name, t=target: hook.find(n, target=t, severity="critical"),
                120,
                f"{name} for {target}",
            )
            assert found[0][0] == "pager"
    finally:
        pause_postgres(stack.pg_crit, "SIGCONT")
        point_standby_at(stack.standby, stack.pg_warn.port)

    # --- end every incident -----------------------------------------------------------------
    slow_pg.set()
    band_pg.set()
    slow_redis.set()
    for conn in stack.held:
        conn.close()
    stack.held.clear()
    # Plenty of fast calls push p95 back under the lines within the rate window.
    fast = [
        load.run(pg_statements(stack.pg_crit, "SELECT 1")),
        load.run(pg_statements(stack.pg_warn, "SELECT 1")),
        load.run(redis_loop(stack.redis_crit, lambda c: c.get("k"))),
    ]
    stack.redis_crit.client().flushall()
    stack.redis_warn.client().flushall()
    stack.s3.start()
    stack.s3.create_bucket(stack.s3.bucket)
    try:
        for name, target, severity, _ in expected:
            if target.endswith("-gone"):
                continue  # never comes back
            wait(
                lambda n=name, t=target, s=severity: hook.find(n, "resolved", target=t, severity=s),
                420,
                f"{name} {severity} for {target} to resolve",
            )
        for name, target in [("SparkiTargetDown", "pg-crit"), *replication_pages]:
            wait(
                lambda n=name, t=target: hook.find(n, "resolved", target=t, severity="critical"),
                180,
                f"{name} for {target} to resolve",
            )

        # --- every panel of every dashboard has data from this live stack ----------------
        dead = dead_panels(stack.prometheus)
        assert dead == [], "panels without data: " + "; ".join(dead)
    finally:
        for f in fast:
            f.set()

    # --- the exporter itself goes away: SparkiExporterDown pages -------------------------
    stack.exporter.terminate()
    stack.exporter.wait(30)
    found = wait(
        lambda: hook.find("SparkiExporterDown", severity="critical"), 120, "SparkiExporterDown"
    )
    assert found[0][0] == "pager"


def am_alerts(am: Alertmanager, name: str, target: str, severity: str) -> list[dict[str, Any]]:
    """The alerts Alertmanager holds with these labels, with their inhibited status."""
    with urllib.request.urlopen(f"{am.url}/api/v2/alerts", timeout=5) as resp:
        alerts = json.loads(resp.read())
    return [
        dict(a)
        for a in alerts
        if a["labels"].get("alertname") == name
        and a["labels"].get("target") == target
        and a["labels"].get("severity") == severity
    ]


def am_alert(am: Alertmanager, name: str, target: str, severity: str) -> dict[str, Any]:
    """One alert as Alertmanager holds it, with its silenced/inhibited status."""
    found = am_alerts(am, name, target, severity)
    assert len(found) == 1, f"Alertmanager holds {len(found)} {name}/{target}/{severity}"
    return found[0]


# Panels only a Redis Cluster target feeds; this stack has single-node servers.
CLUSTER_ONLY_PANELS = {"Cluster nodes up", "Cluster state"}
# Panels whose series exist only in a situation this stack does not create; every one
# of their names is still checked against a real scrape (tests/test_dashboards.py).
CONDITIONAL_PANELS = {
    "Last web config reload": "only with --web.config.file",
    "Lock waits": "shows only waiting locks (> 0)",
    "Dead tuples (top tables)": "the monitored database has no user tables here",
    "Dead tuple share": "the monitored database has no user tables here",
    "WAL archive failures": "only where archive_mode is on",
    "Replica link to primary": "single Redis servers, no replica",
    "Connected replicas": "single Redis servers, no replica (> 0)",
    "Replica lag": "no replica (Redis) or no standby lagging",
    "Replica last contact": "single Redis servers, no replica",
    "Sampled keys without TTL": "needs ttl_policy patterns",
    "Sampled keys with TTL above policy": "needs ttl_policy patterns",
    "Keys sampled": "needs ttl_policy patterns",
    "Mean size of a sampled key": "needs ttl_policy patterns",
    "SCAN passes over the keyspace": "needs ttl_policy patterns",
    "Oldest entry not yet delivered": "needs streams patterns",
    "Oldest entry pending (not acknowledged)": "needs streams patterns",
    "Consumer group lag": "needs streams patterns",
    "Pending entries": "needs streams patterns",
    "Streams and entries": "needs streams patterns",
    "Objects by storage class": "needs the inventory collector",
}
# The boards of the adapters this stack runs; the others' adapters (MySQL, Memcached,
# etcd, NATS) have their names checked against real scrapes in tests/test_dashboards.py.
STACK_BOARDS = ("overview", "postgres", "redis", "s3")


def dead_panels(prom: Prometheus) -> list[str]:
    """Every panel query of every shipped dashboard, with variables filled in."""
    dead = []
    for path in sorted(ROOT / "dashboards" / f"sparki-{name}.json" for name in STACK_BOARDS):
        board = json.loads(path.read_text())
        for panel in board.get("panels", []):
            if panel.get("title") in CLUSTER_ONLY_PANELS | set(CONDITIONAL_PANELS):
                continue
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if not expr:
                    continue
                # Over the whole run: an incident's error rates ended minutes ago.
                expr = expr.replace("$__rate_interval", "10m").replace("$__interval", "1m")
                expr = re.sub(r"\$\{?[A-Za-z_]+\}?", ".*", expr)
                if not prom.query(expr):
                    dead.append(f"{path.name}: {panel.get('title')}: {target['expr']}")
    return dead
