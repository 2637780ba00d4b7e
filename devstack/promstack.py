"""Real Prometheus and Alertmanager (Debian's binaries) plus a webhook that records pages.

Used by the end-to-end tests and the demo. Timing may be shortened here (scrape and
evaluation intervals, ``for`` durations, Alertmanager's grouping waits); thresholds and
expressions are always the shipped ones.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from .postgres import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = (
    shutil.which("prometheus-alertmanager")
    or shutil.which("alertmanager")
    or "/usr/bin/prometheus-alertmanager"
)


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


class Process:
    """A child process with a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()


def shorten_for(rules_text: str, seconds: int) -> str:
    """Replace every ``for:`` of alert rules by ``seconds`` (keeping 0 as 0), and every
    ``keep_firing_for`` by three times that: still longer than SparkiTargetDown's
    shortened ``for``, as the shipped value is longer than its real one, so an outage
    plays out in the same order, only faster."""
    data = yaml.safe_load(rules_text)
    for group in data.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" in rule and rule.get("for") not in (None, "0s", "0m", 0):
                rule["for"] = f"{seconds}s"
            if "alert" in rule and "keep_firing_for" in rule:
                rule["keep_firing_for"] = f"{3 * seconds}s"
    return str(yaml.safe_dump(data, sort_keys=False))


class Prometheus:
    """Prometheus scraping the given targets with the given rule files.

    ``scrape_configs`` replaces the one job of ``targets`` (for relabelling as a
    ServiceMonitor does); ``external_labels`` and ``alert_relabel_configs`` are the
    settings of an HA pair of Prometheus servers and of an exporter fleet's alerts.
    """

    def __init__(
        self,
        base: Path,
        targets: list[str],
        rule_files: list[Path],
        alertmanager: str | None = None,
        scrape_interval: str = "2s",
        evaluation_interval: str = "2s",
        for_seconds: int | None = None,
        port: int | None = None,
        scrape_configs: list[dict[str, Any]] | None = None,
        external_labels: dict[str, str] | None = None,
        alert_relabel_configs: list[dict[str, Any]] | None = None,
    ) -> None:
        self.base = base / "prometheus"
        self.base.mkdir(parents=True)
        self.port = port or free_port()
        rules_dir = self.base / "rules"
        rules_dir.mkdir()
        copies = []
        for path in rule_files:
            text = path.read_text()
            if for_seconds is not None:
                text = shorten_for(text, for_seconds)
            copy = rules_dir / path.name
            copy.write_text(text)
            copies.append(str(copy))
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": scrape_interval,
                "evaluation_interval": evaluation_interval,
                "scrape_timeout": scrape_interval,
            },
            "rule_files": copies,
            "scrape_configs": scrape_configs
            or [{"job_name": "sparki", "static_configs": [{"targets": targets}]}],
        }
        if external_labels:
            config["global"]["external_labels"] = external_labels
        if alertmanager:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]
            }
            if alert_relabel_configs:
                config["alerting"]["alert_relabel_configs"] = alert_relabel_configs
        (self.base / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.process = Process(
            [
                PROMETHEUS,
                f"--config.file={self.base / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--rules.alert.resend-delay=1s",
                "--web.enable-lifecycle",
            ],
            self.base / "prometheus.log",
        )
        _wait_http(f"{self.url}/-/ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises on a PromQL error."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {expr}: {body}")
        return list(body["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=10) as resp:
            return list(json.load(resp)["data"]["alerts"])

    def stop(self) -> None:
        self.process.stop()


class Alertmanager:
    """Alertmanager with the shipped routing; receivers' URLs pointed at ``webhook``."""

    def __init__(
        self,
        base: Path,
        config_path: Path,
        webhook: str,
        group_wait: str = "1s",
        group_interval: str = "2s",
        repeat_interval: str = "1h",
        port: int | None = None,
    ) -> None:
        self.base = base / "alertmanager"
        self.base.mkdir(parents=True)
        self.port = port or free_port()
        config = yaml.safe_load(config_path.read_text())
        route = config["route"]
        route.update(
            group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval
        )

        def shorten(r: dict[str, Any]) -> None:
            for key in ("group_wait", "group_interval"):
                if key in r:
                    r[key] = route[key]
            for child in r.get("routes", []):
                shorten(child)

        shorten(route)
        secrets = self.base / "secrets"
        secrets.mkdir()
        for receiver in config.get("receivers", []):
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = f"{webhook}/{receiver['name']}"
                auth = hook.get("http_config", {}).get("authorization", {})
                if "credentials_file" in auth:
                    token = secrets / f"{receiver['name']}-token"
                    token.write_text(f"test-token-{receiver['name']}\n")
                    auth["credentials_file"] = str(token)
        (self.base / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.process = Process(
            [
                ALERTMANAGER,
                f"--config.file={self.base / 'alertmanager.yml'}",
                f"--storage.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            self.base / "alertmanager.log",
        )
        _wait_http(f"{self.url}/-/ready")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def stop(self) -> None:
        self.process.stop()


class Webhook:
    """Records every Alertmanager notification: (receiver path, payload, headers)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with outer.lock:
                    outer.received.append((self.path.strip("/"), payload, dict(self.headers)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(receiver, alert) for every alert of every notification, in arrival order."""
        with self.lock:
            return [
                (recv, alert)
                for recv, payload, _ in self.received
                for alert in payload.get("alerts", [])
            ]

    def find(
        self, alertname: str, status: str = "firing", **labels: str
    ) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for recv, alert in self.alerts():
            lab = alert.get("labels", {})
            if lab.get("alertname") != alertname or alert.get("status") != status:
                continue
            if all(
                lab.get(k) == v or (v.startswith("~") and re.fullmatch(v[1:], lab.get(k, "")))
                for k, v in labels.items()
            ):
                out.append((recv, alert))
        return out

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
