"""Fixture plugins live in fixtures_*.py, one per subsystem, so adapters add theirs alone.

With pytest-xdist (``scripts/test`` runs ``-n 2 --dist loadgroup``) every worker is a
process of its own: session fixtures (PostgreSQL clusters, redis-server, moto) start
once per worker, each on free ports in its own temporary directory, so workers share
no server and no state. Tests that must not overlap share an xdist group (below).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = sorted(p.stem for p in Path(__file__).parent.glob("fixtures_*.py"))

# File name -> xdist group. A group runs on one worker, one test after another:
# the end-to-end and demo tests each run a whole stack (Prometheus, Alertmanager, the
# exporter, load) and time alerts, so they never overlap one another; a quiet demo
# test gets a group of its own.
XDIST_GROUPS = {
    "test_e2e.py": "stack",
    "test_demo.py": "stack",
    "test_demo_incident.py": "stack",
    "test_demo_quiet.py": "demo-quiet",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = XDIST_GROUPS.get(item.path.name)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
