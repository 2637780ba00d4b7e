"""The plain demo (no incident) runs 10 minutes without a single page.

A pager that cries wolf gets muted: a cold cache, a young server, the first polls of a
target must not page anyone. This runs the demo as a user would, with the shipped rules
and routing (every `for` cut to 30 s, so 10 minutes here cover far more than 10 minutes
of the shipped holds), and asserts that Alertmanager sent nothing to the pager while the
heartbeat proves notifications do flow. It takes 10 minutes, so it lives in its own file
and can run beside the rest of the suite (pytest-xdist).
"""

from __future__ import annotations

import re
import time

import pytest
from test_demo import start_demo, stop_demo, wait_rules_healthy

pytestmark = pytest.mark.slow
QUIET_SECONDS = 600


def test_plain_demo_pages_no_one_for_ten_minutes() -> None:
    proc, out, _ = start_demo()
    try:
        prom = out.wait_for(r"Prometheus alerts\s+(http://\S+)/classic/alerts", 120).group(1)
        base = out.wait_for(r"files in (\S+?)\)", 5).group(1)
        wait_rules_healthy(prom, 60)
        # The heartbeat reaches its receiver: notifications work, so silence means quiet.
        out.wait_for(r"\[heartbeat\] FIRING\s+SparkiWatchdog", 120)
        end = time.monotonic() + QUIET_SECONDS
        while time.monotonic() < end:
            assert proc.poll() is None, out.text[-3000:]
            pages = re.findall(r"^(?:\d\d:\d\d:\d\d )?\[pager\s*\].*$", out.text, re.M)
            assert pages == [], pages
            time.sleep(5)
        stop_demo(proc, out, base)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
