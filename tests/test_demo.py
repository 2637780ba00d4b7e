"""The README's first command: the demo starts, shows live data, and leaves nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

from fixtures_core import free_port


def test_demo_runs_shows_live_metrics_and_cleans_up() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.demo", "--duration", "25", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
                count = re.search(
                    r"sparki_postgres_statement_duration_seconds_count\{target="
                    r'"demo-postgres",datname="app"\} (\d+)',
                    body,
                )
                if count and int(count.group(1)) > 0:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert 'sparki_up{adapter="postgres",target="demo-postgres"} 1' in body
        assert count and int(count.group(1)) > 0, "the demo's load should reach the histogram"
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in out
    assert "nothing left running" in out
    base = re.search(r"files in (\S+?)\)", out)
    assert base
    leftovers = subprocess.run(["pgrep", "-f", base.group(1)], capture_output=True, text=True)
    assert leftovers.stdout == ""
