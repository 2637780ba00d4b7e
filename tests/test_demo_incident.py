"""``scripts/demo --incident`` shows one alert per part that has an incident step firing
in chat and resolving once the incident ends: the NATS indexer stops draining its stream
(SparkiNatsConsumerFallingBehind), 16 MySQL sessions are held on a server with
max_connections 20 (SparkiMysqlConnectionsHigh) and Memcached fills past 80 % of its
memory (SparkiMemcachedMemoryHigh).

The other parts' incident alerts are tests/test_e2e.py's business (on its own stack);
this pins what a person running the demo sees for these three. One run of the demo for
all of them: the MySQL and Memcached alerts fire and resolve within the time the NATS
backlog takes, so they add no wall time. It takes several minutes, so it lives in its
own file (slow).
"""

from __future__ import annotations

import pytest
from test_demo import start_demo, stop_demo

pytestmark = pytest.mark.slow
# (alert, the target label of the demo's part)
ALERTS = (
    ("SparkiNatsConsumerFallingBehind", "nats"),
    ("SparkiMysqlConnectionsHigh", "mysql"),
    ("SparkiMemcachedMemoryHigh", "memcached"),
)


def test_incident_fires_and_resolves_one_alert_per_part() -> None:
    proc, out, _ = start_demo("--incident", "--incident-seconds", "120")
    try:
        base = out.wait_for(r"files in (\S+?)\)", 120).group(1)
        began = out.wait_for(r"\*\*\* incident: .*NATS indexer stops draining", 90)
        fired = {
            alert: out.wait_for(
                rf"\[chat\s*\] FIRING\s+{alert} severity=warning target={target}:", 300
            )
            for alert, target in ALERTS
        }
        out.wait_for(r"\*\*\* incident over", 180)
        resolved = {
            alert: out.wait_for(rf"\[chat\s*\] RESOLVED\s+{alert} .*target={target}:", 420)
            for alert, target in ALERTS
        }
        for alert, _ in ALERTS:
            # Caused by the incident (not firing from the start), and over once it ends.
            assert began.start() < fired[alert].start() < resolved[alert].start(), alert
        stop_demo(proc, out, base)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
