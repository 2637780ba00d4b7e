"""Redis Cluster topology: CLUSTER NODES parsed, and the short node ids used as labels."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One line of CLUSTER NODES."""

    id: str
    host: str
    port: int
    role: str  # primary, replica or unknown
    myself: bool


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """Nodes with a usable address; handshake and noaddr entries are skipped."""
    nodes: list[ClusterNode] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        node_id, address, flags = parts[0], parts[1], set(parts[2].split(","))
        if flags & {"handshake", "noaddr"}:
            continue
        hostport = address.split("@", 1)[0]
        announced = address.split(",", 1)[1] if "," in address else ""
        host, _, port = hostport.rpartition(":")
        if not port.isdigit() or int(port) == 0:
            continue
        role = "primary" if "master" in flags else "replica" if "slave" in flags else "unknown"
        nodes.append(
            ClusterNode(node_id, announced or host.strip("[]"), int(port), role, "myself" in flags)
        )
    return nodes


def short_ids(ids: Iterable[str], minimum: int = 8) -> dict[str, str]:
    """The shortest prefix of each node id (at least ``minimum``) that is unique."""
    ids = sorted(set(ids))
    out: dict[str, str] = {}
    for node_id in ids:
        length = minimum
        while length < len(node_id) and any(
            o != node_id and o[:length] == node_id[:length] for o in ids
        ):
            length += 1
        out[node_id] = node_id[:length]
    return out
