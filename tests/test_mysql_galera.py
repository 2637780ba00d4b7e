"""The galera collector against real Galera nodes (devstack/mysql.py's GaleraNode).

What a Galera user relies on: a node's view of its cluster (size, Primary component,
ready, Synced) exported as the server reports it, and a node that lost its peers and
its quorum still polled, so the alerts on it can fire. Two nodes on free ports, the
second killed: the survivor of a two-node cluster has no majority and leaves the
Primary component, which is what a real partition or crash looks like from there.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_rules import GALERA_ONLY

from devstack.mysql import GALERA, GaleraNode
from exporter.generate import promql

pytestmark = pytest.mark.skipif(
    not Path(GALERA).exists() or shutil.which("mariadbd") is None, reason="galera-4 not installed"
)
FAST = {"poll_interval": "1s", "poll_timeout": "0.9s"}


async def galera(exp: Any, target: str) -> dict[str, float | None]:
    names = ("cluster_size", "cluster_primary", "ready", "connected", "local_state")
    return {n: await exp.value(f"sparki_mysql_galera_{n}", target=target) for n in names}


async def test_a_node_sees_its_cluster_grow_and_lose_quorum(start_exporter: Any) -> None:
    first = GaleraNode()
    second = GaleraNode(peers=[first])
    try:
        await asyncio.to_thread(first.start)
        exp = await start_exporter(
            {
                **FAST,
                "mysql": [
                    first.target("a", collectors={"galera": True}),
                    second.target("b", collectors={"galera": True}),
                ],
            }
        )
        await exp.wait_value("sparki_up", 1, timeout=30, adapter="mysql", target="a")
        await exp.polls("mysql", "a", 1)
        # A one-node cluster: Primary, ready, Synced.
        assert await exp.value("sparki_capability", target="a", capability="galera") == 1
        assert await galera(exp, "a") == {
            "cluster_size": 1,
            "cluster_primary": 1,
            "ready": 1,
            "connected": 1,
            "local_state": 4,
        }
        # What the Galera alerts and panels read (left out of the plain real scrapes).
        assert GALERA_ONLY <= promql.exposition_names(await exp.scrape())

        await asyncio.to_thread(second.start)
        await exp.wait_value("sparki_mysql_galera_cluster_size", 2, timeout=30, target="a")
        await exp.wait_value("sparki_mysql_galera_local_state", 4, timeout=30, target="b")
        assert await galera(exp, "b") == {
            "cluster_size": 2,
            "cluster_primary": 1,
            "ready": 1,
            "connected": 1,
            "local_state": 4,
        }

        # The second node crashes: the first, alone of two, has no majority. It leaves
        # the Primary component and refuses queries, and the exporter still polls it.
        await asyncio.to_thread(second.kill)
        await exp.wait_value("sparki_mysql_galera_cluster_primary", 0, timeout=30, target="a")
        await exp.polls("mysql", "a", 1)
        view = await galera(exp, "a")
        assert (view["cluster_size"], view["ready"]) == (1, 0), view
        assert view["local_state"] != 4
        assert await exp.value("sparki_up", adapter="mysql", target="a") == 1
        assert await exp.value("sparki_collector_success", target="a", collector="galera") == 1
        await exp.wait_value("sparki_up", 0, timeout=30, adapter="mysql", target="b")
    finally:
        await asyncio.to_thread(second.destroy)
        await asyncio.to_thread(first.destroy)
