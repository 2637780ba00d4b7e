"""``scripts/demo --incident`` shows the NATS step of the incident: the indexer stops
draining its stream, SparkiNatsConsumerFallingBehind reaches chat, and once the
incident ends and the backlog is drained it resolves.

The other parts' incident alerts are tests/test_e2e.py's business (on its own stack);
this pins what a person running the demo sees for NATS. It takes several minutes, so it
lives in its own file (slow).
"""

from __future__ import annotations

import pytest
from test_demo import start_demo, stop_demo

pytestmark = pytest.mark.slow
ALERT = "SparkiNatsConsumerFallingBehind"


def test_incident_fires_and_resolves_the_nats_consumer_alert() -> None:
    proc, out, _ = start_demo("--incident", "--incident-seconds", "120")
    try:
        base = out.wait_for(r"files in (\S+?)\)", 120).group(1)
        out.wait_for(r"\*\*\* incident: .*NATS indexer stops draining", 90)
        fired = out.wait_for(rf"\[chat\s*\] FIRING\s+{ALERT} severity=warning target=nats", 300)
        out.wait_for(r"\*\*\* incident over", 180)
        resolved = out.wait_for(rf"\[chat\s*\] RESOLVED\s+{ALERT} .*target=nats", 420)
        assert fired.start() < resolved.start()
        stop_demo(proc, out, base)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
