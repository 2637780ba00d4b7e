"""Alertmanager routing: critical pages, warning notifies, critical inhibits warning.

Checked three ways: amtool's own validation and routing tests, the config's structure,
and a real Alertmanager (Debian's, the same package as amtool) fed alerts, whose
webhook deliveries land on a local HTTP server.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_core import free_port, wait_until

from devstack.promstack import Alertmanager, Prometheus, Webhook
from exporter.adapters.postgres import replication as pg_replication
from exporter.adapters.postgres.replication import ReplicationHealth
from exporter.exposition import TEXT_CONTENT_TYPE
from exporter.generate import alertmanager as generate_alertmanager
from exporter.generate import catalog
from exporter.generate.thresholds import load
from exporter.metrics import merge_exposition, render_families
from exporter.shard import HA_LABEL, Shard

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
DEPRECATED = {
    "match",
    "match_re",
    "source_match",
    "source_match_re",
    "target_match",
    "target_match_re",
}


def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return data


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def test_amtool_check_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=SparkiPostgresConnectionsHigh", "target=pg"], "pager"),
        (["severity=warning", "alertname=SparkiPostgresConnectionsHigh", "target=pg"], "chat"),
        (
            ["severity=critical", "alertname=SparkiTargetDown", "target=cache", "adapter=redis"],
            "pager",
        ),
        (["severity=warning", "alertname=SparkiS3CanaryFailing", "target=minio"], "chat"),
        (["severity=info", "alertname=Other"], "chat"),  # unknown severity: still seen
        (["severity=heartbeat", "alertname=SparkiWatchdog"], "heartbeat"),
    ],
)
def test_amtool_routes(labels: list[str], receiver: str) -> None:
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_uses_matchers_not_the_deprecated_match() -> None:
    def walk(node: Any, path: str = "") -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield f"{path}.{key}"
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}.{i}")

    keys = list(walk(config()))
    assert not [k for k in keys if k.rsplit(".", 1)[-1] in DEPRECATED]
    assert any(k.endswith(".matchers") for k in keys)


IDENTITY = {"adapter", "cluster", "job", "instance", "target"}
# The labels that tell one instance of an alert from another (a database, a replica, a
# node, a bucket, ...): what every adapter's signals declare. The first ones were
# written out here by hand; each adapter added since brings its own.
SIGNAL_LABELS = {"datname", "replica", "slot", "node", "bucket", "operation", "capability"} | {
    label for signal in catalog.SIGNALS for label in signal.labels
} - IDENTITY


def test_grouping_and_inhibition() -> None:
    cfg = config()
    route = cfg["route"]
    assert set(route["group_by"]) == {"alertname"} | IDENTITY | SIGNAL_LABELS
    # The copies of an exporter HA pair (and Prometheus servers) are never told apart.
    assert not {HA_LABEL, "pod", "prometheus_replica"} & set(route["group_by"])
    by_matcher = {r["matchers"][0]: r["receiver"] for r in route["routes"]}
    assert by_matcher == {
        'alertname="SparkiWatchdog"': "heartbeat",
        'severity="critical"': "pager",
        'severity="warning"': "chat",
    }
    rule = cfg["inhibit_rules"][0]
    assert rule["source_matchers"] == ['severity="critical"']
    assert rule["target_matchers"] == ['severity="warning"']
    assert set(rule["equal"]) == {"alertname"} | IDENTITY | SIGNAL_LABELS
    for rule in cfg["inhibit_rules"][1:]:
        assert set(rule["equal"]) == IDENTITY, rule


def test_the_committed_config_is_the_generated_one() -> None:
    th = load(ROOT / "rules" / "thresholds.yaml")
    (path, text), *_ = generate_alertmanager.render(th).items()
    assert (ROOT / path).read_text() == text


def test_receivers_read_their_secrets_from_files() -> None:
    receivers = {r["name"]: r for r in config()["receivers"]}
    assert set(receivers) == {"pager", "chat", "heartbeat"}
    for name, receiver in receivers.items():
        assert set(receiver) == {"name", "webhook_configs"}, name
        for hook in receiver["webhook_configs"]:
            auth = hook["http_config"]["authorization"]
            assert set(auth) == {"type", "credentials_file"}, name
            assert auth["credentials_file"].startswith("/")
            assert "@" not in hook["url"] and "token" not in hook["url"].lower()


# --- a real Alertmanager -----------------------------------------------------------------


class Hooks(ThreadingHTTPServer):
    """Records every webhook delivery: (path, Authorization header, payload)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                outer.received.append((self.path, self.headers.get("Authorization", ""), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def alerts(self, path: str) -> list[tuple[str, dict[str, str]]]:
        return [
            (auth, alert["labels"])
            for p, auth, body in list(self.received)
            if p == path
            for alert in body["alerts"]
            if alert["status"] == "firing"
        ]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Hooks]]:
    """The shipped config, pointed at local hooks and local secret files, with short waits."""
    hooks = Hooks()
    cfg = config()
    cfg["route"].update(group_wait="1s", group_interval="1s")
    for receiver in cfg["receivers"]:
        secret = tmp_path / f"{receiver['name']}-token"
        secret.write_text(f"{receiver['name']}-secret\n")
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{hooks.url}/{receiver['name']}"
            hook["http_config"]["authorization"]["credentials_file"] = str(secret)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    proc = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={path}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, "alertmanager exited"
            with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as resp:
                return resp.status == 200

        wait_until(ready, 30, 0.2, retry_on=(OSError,), what="alertmanager ready")
        yield base, hooks
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        hooks.shutdown()
        hooks.server_close()


def post_alerts(base: str, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    req = urllib.request.Request(
        f"{base}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def alert_states(base: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as resp:
        alerts = json.loads(resp.read())
    return {
        (a["labels"]["alertname"], a["labels"]["target"], a["labels"]["severity"]): a["status"]
        for a in alerts
    }


@pytest.mark.slow
def test_real_alertmanager_pages_critical_and_inhibits_its_warning(
    alertmanager: tuple[str, Hooks],
) -> None:
    base, hooks = alertmanager
    memory = {"alertname": "SparkiRedisMemoryHigh", "job": "sparki"}
    post_alerts(
        base,
        [
            {**memory, "target": "cache", "severity": "critical"},
            {**memory, "target": "cache", "severity": "warning"},  # inhibited by the critical
            {**memory, "target": "sessions", "severity": "warning"},  # another target: notified
        ],
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (hooks.alerts("/pager") and hooks.alerts("/chat")):
        time.sleep(0.2)
    time.sleep(3)  # a few more group intervals: anything wrongly routed would arrive now

    pages = hooks.alerts("/pager")
    assert pages, "the critical alert was not delivered to the pager"
    assert {(auth, labels["target"], labels["severity"]) for auth, labels in pages} == {
        ("Bearer pager-secret", "cache", "critical")
    }
    chats = hooks.alerts("/chat")
    assert {(auth, labels["target"], labels["severity"]) for auth, labels in chats} == {
        ("Bearer chat-secret", "sessions", "warning")
    }
    states = alert_states(base)
    inhibited = states[("SparkiRedisMemoryHigh", "cache", "warning")]
    assert inhibited["state"] == "suppressed" and inhibited["inhibitedBy"]
    assert states[("SparkiRedisMemoryHigh", "sessions", "warning")]["state"] == "active"
    assert states[("SparkiRedisMemoryHigh", "cache", "critical")]["state"] == "active"


def am_state(base: str, labels: dict[str, str]) -> dict[str, Any]:
    """The status of the one alert Alertmanager holds with exactly these labels."""
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as resp:
        alerts = json.loads(resp.read())
    found = [a for a in alerts if a["labels"] == labels]
    assert len(found) == 1, (labels, [a["labels"] for a in alerts])
    return dict(found[0]["status"])


@pytest.mark.slow
def test_real_alertmanager_never_inhibits_or_groups_across_adapters_replicas_or_environments(
    alertmanager: tuple[str, Hooks],
) -> None:
    """The three crossings of issue 11 each deliver both alerts, while inhibition within
    one adapter, replica and environment still holds the warning back, and an S3 outage
    pages once."""
    base, hooks = alertmanager
    env = {"job": "sparki", "instance": "sparki-exporter:9840", "cluster": "prod"}
    pg_down = {
        **env,
        "alertname": "SparkiTargetDown",
        "adapter": "postgres",
        "target": "main",
        "severity": "critical",
    }
    # 1. Redis `main` is another target than PostgreSQL `main`.
    redis_main = {
        **env,
        "alertname": "SparkiRedisMemoryHigh",
        "adapter": "redis",
        "target": "main",
        "node": "10.0.0.1:6379",
        "severity": "warning",
    }
    pg_main_latency = {  # the same PostgreSQL target: its outage says it all
        **env,
        "alertname": "SparkiPostgresStatementLatencyHigh",
        "adapter": "postgres",
        "target": "main",
        "datname": "app",
        "severity": "warning",
    }
    # 2. Replica r1's critical lag says nothing about r2.
    lag = {**env, "alertname": "SparkiPostgresReplicationLagHigh", "adapter": "postgres"}
    lag = {**lag, "target": "pg"}
    r1_crit = {**lag, "replica": "r1", "severity": "critical"}
    r1_warn = {**lag, "replica": "r1", "severity": "warning"}
    r2_warn = {**lag, "replica": "r2", "severity": "warning"}
    # 3. One environment's critical says nothing about another's warning; and the same
    # alert in two environments is two notifications.
    mem = {
        "alertname": "SparkiRedisMemoryHigh",
        "adapter": "redis",
        "target": "cache",
        "node": "10.0.0.2:6379",
        "job": "sparki",
    }
    prod_crit = {**mem, "instance": "a:9840", "cluster": "prod", "severity": "critical"}
    staging_warn = {**mem, "instance": "b:9840", "cluster": "staging", "severity": "warning"}
    staging_crit_other = {**staging_warn, "target": "sessions", "severity": "critical"}
    # 4. An S3 outage: target down and canary failing, both critical: one page.
    s3 = {**env, "adapter": "s3", "target": "minio"}
    s3_down = {**s3, "alertname": "SparkiTargetDown", "severity": "critical"}
    canary = {**s3, "alertname": "SparkiS3CanaryFailing", "operation": "put"}
    canary = {**canary, "severity": "critical"}

    sent = [pg_down, redis_main, pg_main_latency, r1_crit, r1_warn, r2_warn]
    sent += [prod_crit, staging_warn, staging_crit_other, s3_down, canary]
    post_alerts(base, sent)

    pager_expected = [pg_down, r1_crit, prod_crit, staging_crit_other, s3_down]
    chat_expected = [redis_main, r2_warn, staging_warn]
    inhibited = [pg_main_latency, r1_warn, canary]

    def delivered(path: str) -> list[dict[str, str]]:
        return [labels for _, labels in hooks.alerts(path)]

    deadline = time.monotonic() + 60
    while not (
        all(a in delivered("/pager") for a in pager_expected)
        and all(a in delivered("/chat") for a in chat_expected)
    ):
        assert time.monotonic() < deadline, (delivered("/pager"), delivered("/chat"))
        time.sleep(0.2)
    # Anything wrongly delivered would arrive within a few more group intervals (1 s);
    # wait for Alertmanager to report the inhibitions it holds instead of sleeping.
    deadline = time.monotonic() + 30
    while not all(am_state(base, a)["state"] == "suppressed" for a in inhibited):
        assert time.monotonic() < deadline, [am_state(base, a) for a in inhibited]
        time.sleep(0.2)
    time.sleep(2)
    for alert in inhibited:
        assert am_state(base, alert)["inhibitedBy"], alert
        assert alert not in delivered("/pager") + delivered("/chat"), alert

    def keys(alerts: list[dict[str, str]]) -> set[frozenset[tuple[str, str]]]:
        return {frozenset(a.items()) for a in alerts}

    assert keys(delivered("/pager")) == keys(pager_expected)
    assert keys(delivered("/chat")) == keys(chat_expected)
    # One notification never mixes environments, adapters, targets or replicas.
    for path, _, body in hooks.received:
        keys = {
            tuple(a["labels"].get(k) for k in ("cluster", "adapter", "target", "replica"))
            for a in body["alerts"]
        }
        assert len(keys) == 1, (path, body["groupLabels"])


# --- an HA pair of exporters, scraped by an HA pair of Prometheus servers ------------------

FLEET_MONITOR = ROOT / "deploy" / "kubernetes" / "fleet" / "servicemonitor.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
RULES = ROOT / "rules" / "sparki-alerts.rules.yml"


def documented_alert_relabel_configs() -> list[dict[str, Any]]:
    """The `alert_relabel_configs` docs/operations.md tells a fleet's Prometheus to use."""
    blocks = re.findall(r"```yaml\n(.*?)```", OPERATIONS.read_text(), re.S)
    (block,) = [b for b in blocks if "alert_relabel_configs" in b]
    rules: list[dict[str, Any]] = yaml.safe_load(textwrap.dedent(block))["alerting"][
        "alert_relabel_configs"
    ]
    return rules


def operator_scrape_config(pods: dict[str, str]) -> dict[str, Any]:
    """What the Prometheus Operator makes of the fleet's ServiceMonitor, for pods (name ->
    address): `pod` from the discovered pod name, then the endpoint's own relabelings.
    Kubernetes discovery is replaced by static targets with the meta label it sets."""
    (endpoint,) = yaml.safe_load(FLEET_MONITOR.read_text())["spec"]["endpoints"]
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    relabel = [{"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"}]
    relabel += [{keys.get(k, k): v for k, v in rule.items()} for rule in endpoint["relabelings"]]
    return {
        "job_name": "sparki",
        "static_configs": [
            {"targets": [address], "labels": {"__meta_kubernetes_pod_name": pod}}
            for pod, address in pods.items()
        ],
        "relabel_configs": relabel,
    }


class FleetCopy(ThreadingHTTPServer):
    """One copy of shard 1 of 3: what its /metrics says of a lagging PostgreSQL primary,
    rendered by the exporter's own code (the replication families and shard info)."""

    def __init__(self, copy: int) -> None:
        health = ReplicationHealth(None, None, (), 2, None)
        lag = (("standby-a", 400.0, 1e6), ("standby-b", 900.0, 2e6))  # both critical
        families = pg_replication.families(pg_replication.Part(lag, health), "pg")
        families += Shard(1, 3, copy).families()
        body = merge_exposition([render_families(families)], openmetrics=False)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", TEXT_CONTENT_TYPE)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.mark.slow
def test_an_ha_pair_pages_once_and_keeps_the_standby_in_replica(tmp_path: Path) -> None:
    """Pods sparki-exporter-1 and -4 (shard 1, copies 0 and 1) export the same lagging
    standbys; two Prometheus servers (an HA pair, as the Operator runs them) scrape both
    through the fleet's ServiceMonitor relabelling and send alerts through the
    documented alert relabelling to the shipped Alertmanager: each standby pages once,
    naming the standby, although four senders report it."""
    copies = {f"sparki-exporter-{o}": FleetCopy(copy) for o, copy in ((1, 0), (4, 1))}
    webhook = Webhook()
    am = Alertmanager(tmp_path, CONFIG, webhook.url, group_wait="1s", group_interval="2s")
    relabel = documented_alert_relabel_configs()
    proms = []
    try:
        for i in range(2):
            proms.append(
                Prometheus(
                    tmp_path / f"prometheus-{i}",
                    [],
                    [RULES],
                    alertmanager=am.address,
                    scrape_interval="1s",
                    evaluation_interval="1s",
                    for_seconds=1,
                    scrape_configs=[
                        operator_scrape_config({p: c.address for p, c in copies.items()})
                    ],
                    external_labels={"prometheus_replica": f"prometheus-{i}"},
                    # The Operator drops its replica external label from alerts itself.
                    alert_relabel_configs=[
                        {"action": "labeldrop", "regex": "prometheus_replica"},
                        *relabel,
                    ],
                )
            )

        # The series: the copies differ in sparki_replica alone, and the standby's name
        # stays in `replica` (no exported_replica), in shard info as in PostgreSQL's.
        def lag_series() -> list[dict[str, str]]:
            return [s["metric"] for s in proms[0].query("sparki_postgres_replication_lag_seconds")]

        wait_until(lambda: len(lag_series()) == 4, 30, 0.2, what="both copies scraped")
        assert sorted((s["replica"], s[HA_LABEL]) for s in lag_series()) == [
            ("standby-a", "0"),
            ("standby-a", "1"),
            ("standby-b", "0"),
            ("standby-b", "1"),
        ]
        info = [s["metric"] for s in proms[0].query("sparki_exporter_shard_info")]
        assert sorted((s["shard_replica"], s[HA_LABEL]) for s in info) == [("0", "0"), ("1", "1")]
        for series in lag_series() + info:
            assert series["instance"] == "sparki-shard-1", series
            assert "pod" not in series, series
            assert not [k for k in series if k.startswith("exported_")], series

        # The alerts: one page per standby, one alert in it.
        def pages() -> list[dict[str, Any]]:
            return [
                payload
                for receiver, payload, _ in list(webhook.received)
                if receiver == "pager"
                and payload["groupLabels"].get("alertname") == "SparkiPostgresReplicationLagHigh"
            ]

        wait_until(lambda: len(pages()) >= 2, 60, 0.2, what="both standbys paged")
        # Prometheus re-sends every second: a second alert of the pair, or a new
        # notification for it, would be here within a few group intervals (2 s).
        time.sleep(6)
        assert len(pages()) == 2, [p["alerts"] for p in pages()]
        paged = {}
        for page in pages():
            (alert,) = page["alerts"]
            labels = alert["labels"]
            paged[labels["replica"]] = labels
            assert HA_LABEL not in labels and "prometheus_replica" not in labels, labels
            assert "pod" not in labels and labels["instance"] == "sparki-shard-1", labels
            assert labels["severity"] == "critical" and labels["target"] == "pg", labels
            assert "lags over 5m" in alert["annotations"]["summary"]
            assert labels["replica"] in alert["annotations"]["summary"]
        assert set(paged) == {"standby-a", "standby-b"}
        # Alertmanager holds one alert per standby and severity, not one per sender.
        with urllib.request.urlopen(f"{am.url}/api/v2/alerts", timeout=5) as resp:
            held = [
                a["labels"]
                for a in json.loads(resp.read())
                if a["labels"]["alertname"] == "SparkiPostgresReplicationLagHigh"
            ]
        assert sorted((a["replica"], a["severity"]) for a in held) == [
            ("standby-a", "critical"),
            ("standby-a", "warning"),
            ("standby-b", "critical"),
            ("standby-b", "warning"),
        ]
    finally:
        for prom in proms:
            prom.stop()
        am.stop()
        webhook.stop()
        for server in copies.values():
            server.shutdown()
            server.server_close()
