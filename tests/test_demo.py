"""The README's first command: the demo starts the whole stack, shows live data, fires
and resolves a real incident's alerts, and leaves nothing behind on Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from fixtures_core import free_port

pytestmark = pytest.mark.slow


class Output:
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
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} within {timeout:g}s:\n{self.text[-3000:]}")


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_demo_stack_incident_and_clean_stop() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.demo",
            "--port",
            str(port),
            "--incident",
            "--incident-seconds",
            "75",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = Output(proc)
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
        body = get(f"http://127.0.0.1:{port}/metrics")
        for adapter in ("postgres", "redis", "s3"):
            assert f'sparki_up{{adapter="{adapter}",target="{adapter}"}} 1' in body
        # The canary and the cost figures show real values from the demo's own bucket.
        assert re.search(
            r'sparki_s3_probe_duration_seconds_count\{[^}]*operation="put"[^}]*\} [1-9]', body
        )
        deadline = time.monotonic() + 60
        while not re.search(
            r"sparki_s3_storage_cost_dollars_per_month\{[^}]*\} [0-9.e-]*[1-9]", body
        ):
            assert time.monotonic() < deadline, "no storage cost in the demo"
            time.sleep(2)
            body = get(f"http://127.0.0.1:{port}/metrics")
        rules = json.loads(get(f"{prom}/api/v1/rules"))["data"]["groups"]
        assert sum(len(g["rules"]) for g in rules) > 20  # the shipped rule files
        # The incident pages through the shipped routing and resolves when it ends.
        # Pager lines carry the time they arrived, as a pager shows it.
        out.wait_for(
            r"(?m)^\d\d:\d\d:\d\d \[pager\] FIRING\s+SparkiRedisMemoryHigh "
            r"severity=critical target=redis",
            240,
        )
        out.wait_for(r"FIRING\s+SparkiPostgresStatementLatencyHigh", 240)
        out.wait_for(r"RESOLVED\s+SparkiRedisMemoryHigh severity=critical", 300)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in out.text
    assert "nothing left running" in out.text
    leftovers = subprocess.run(["pgrep", "-f", base], capture_output=True, text=True)
    assert leftovers.stdout == ""
