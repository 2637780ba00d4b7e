"""Collector ``galera``: a Galera (wsrep) node's view of its cluster.

A node is a server with a wsrep provider loaded (``wsrep_provider_name`` set). From
SHOW GLOBAL STATUS: ``wsrep_cluster_size``, ``wsrep_cluster_status`` (Primary
means this node's component has quorum), ``wsrep_ready`` (accepts queries),
``wsrep_connected`` and ``wsrep_local_state`` (4 = Synced). Off by default: on a
server that is not a Galera node it can only report ``sparki_capability
{capability="galera"} 0`` (and log it once), which is what a user who switched it on
for a plain server needs to hear.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ...config import TargetConfig
from ...logs import kv
from ...metrics import GaugeMetricFamily, Metric
from .context import Context

log = logging.getLogger("sparki.mysql")


@dataclass(frozen=True, slots=True)
class Part:
    present: bool
    cluster_size: int = 0
    primary: bool = False
    ready: bool = False
    connected: bool = False
    local_state: int = 0


class Collector:
    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.reported: bool | None = None

    async def collect(self, ctx: Context) -> Part:
        # MariaDB built with wsrep shows every wsrep_* variable even with wsrep off
        # (wsrep_cluster_size 0): a node has a provider loaded.
        present = bool(ctx.status.get("wsrep_provider_name", "").strip())
        if present != self.reported:
            self.reported = present
            if not present:
                log.warning(
                    "galera collector on, but the server is not a Galera node",
                    extra=kv(
                        target=self.config.name,
                        fix="switch the galera collector off for this target "
                        "(collectors: {galera: false}), or enable wsrep on the server",
                    ),
                )
        if not present:
            return Part(False)
        s = ctx.status
        return Part(
            True,
            cluster_size=int(ctx.number("wsrep_cluster_size")),
            primary=s.get("wsrep_cluster_status", "").lower() == "primary",
            ready=s.get("wsrep_ready", "").upper() == "ON",
            connected=s.get("wsrep_connected", "").upper() == "ON",
            local_state=int(ctx.number("wsrep_local_state")),
        )


def families(target: str, part: Part) -> list[Metric]:
    cap = GaugeMetricFamily(
        "sparki_capability",
        "1 when an optional data source is usable, 0 when it is not "
        "(the log says why and how to fix it)",
        labels=["adapter", "target", "capability"],
    )
    cap.add_metric(["mysql", target, "galera"], 1 if part.present else 0)
    out: list[Metric] = [cap]
    if not part.present:
        return out
    for name, doc, value in (
        (
            "cluster_size",
            "Nodes in this node's cluster component (wsrep_cluster_size)",
            part.cluster_size,
        ),
        (
            "cluster_primary",
            "1 when this node's component has quorum (Primary)",
            1 if part.primary else 0,
        ),
        ("ready", "1 when the node accepts queries (wsrep_ready)", 1 if part.ready else 0),
        (
            "connected",
            "1 when the node is connected to the group (wsrep_connected)",
            1 if part.connected else 0,
        ),
        (
            "local_state",
            "wsrep_local_state: 1 joining, 2 donor, 3 joined, 4 synced (0: not in a Primary one)",
            part.local_state,
        ),
    ):
        g = GaugeMetricFamily(f"sparki_mysql_galera_{name}", doc, labels=["target"])
        g.add_metric([target], value)
        out.append(g)
    return out
