"""Alertmanager routing: critical pages, warning notifies, critical inhibits warning.

Checked three ways: amtool's own validation and routing tests, the config's structure,
and a real Alertmanager (Debian's, the same package as amtool) fed alerts, whose
webhook deliveries land on a local HTTP server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
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

from exporter.generate import alertmanager as generate_alertmanager
from exporter.generate import catalog
from exporter.generate.thresholds import load

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
