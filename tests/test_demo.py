"""The README's first command, as a smoke test: the demo starts the whole stack (servers,
exporter, Prometheus with the shipped rules, Alertmanager with the shipped routing),
shows live data, and leaves nothing behind on Ctrl-C.

Paging through real incidents is tests/test_e2e.py's job; that the plain demo never
pages is tests/test_demo_quiet.py's (10 minutes, so it runs apart); that --incident
fires and resolves the NATS step is tests/test_demo_incident.py's.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from fixtures_core import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


class Output:
    """The demo's stdout, collected by a thread so the pipe never fills."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.proc = proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text)
            if found:
                return found
            assert self.proc.poll() is None, f"the demo exited:\n{self.text[-3000:]}"
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} within {timeout:g}s:\n{self.text[-3000:]}")


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def start_demo(*args: str) -> tuple[subprocess.Popen[str], Output, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.demo", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, Output(proc), port


def stop_demo(proc: subprocess.Popen[str], out: Output, base: str) -> None:
    """Ctrl-C, then: exit 0, no traceback, no process left that uses the demo's files."""
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    assert proc.returncode == 0, out.text[-3000:]
    assert "Traceback" not in out.text
    assert "nothing left running" in out.text
    leftovers = subprocess.run(["pgrep", "-f", base], capture_output=True, text=True)
    assert leftovers.stdout == ""


def shipped_rule_count() -> int:
    return sum(
        len(group["rules"])
        for path in (ROOT / "rules").glob("*.rules.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
    )


def wait_rules_healthy(prom: str, timeout: float) -> None:
    """Until Prometheus has loaded every shipped rule and evaluated each without error."""
    deadline = time.monotonic() + timeout
    while True:
        groups = json.loads(get(f"{prom}/api/v1/rules"))["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
        if len(rules) == shipped_rule_count() and not bad:
            return
        assert time.monotonic() < deadline, (len(rules), shipped_rule_count(), bad)
        time.sleep(1)


def test_demo_starts_shows_data_and_stops_cleanly() -> None:
    proc, out, port = start_demo()
    try:
        prom = out.wait_for(r"Prometheus alerts\s+(http://\S+)/classic/alerts", 120).group(1)
        base = out.wait_for(r"files in (\S+?)\)", 5).group(1)
        out.wait_for(r"Press Ctrl-C", 5)
        # Every link the demo prints answers on this machine (Debian's Prometheus has
        # only the classic UI; its Alertmanager has no UI), and the amtool line works.
        banner = out.text.split("Press Ctrl-C")[0]
        links = re.findall(r"^  .*?(http://\S+)$", banner, re.M)
        assert len(links) >= 6, banner
        for link in links:
            with urllib.request.urlopen(link, timeout=10) as resp:
                assert resp.status == 200, link
        amtool = re.search(r"^  Alertmanager alerts\s+(amtool .+)$", banner, re.M)
        assert amtool, banner
        queried = subprocess.run(
            amtool.group(1).split(), capture_output=True, text=True, timeout=30
        )
        assert queried.returncode == 0, queried.stderr
        deadline = time.monotonic() + 60
        while True:
            body = get(f"http://127.0.0.1:{port}/metrics")
            up = {
                a: f'sparki_up{{adapter="{a}",target="{t}"}} 1' in body
                for a, t in (
                    ("postgres", "postgres"),
                    ("redis", "redis"),
                    ("s3", "s3"),
                    ("memcached", "memcached"),
                    ("mysql", "mysql"),
                    ("etcd", "etcd"),
                    ("nats", "nats"),
                    ("lsm", "badger"),
                )
            }
            if all(up.values()):
                break
            assert time.monotonic() < deadline, up
            time.sleep(1)
        wait_rules_healthy(prom, 60)
        stop_demo(proc, out, base)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
