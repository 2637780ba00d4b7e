"""What a Memcached collector gets for one node in one poll.

The target opens (and authenticates) the node's connection and hands each enabled
collector a :class:`NodeContext`; the poll deadline bounds every call on it.
``state`` is the node's memory across polls (the canary's histograms live there),
owned by the target: a collector's part of the snapshot is an immutable copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .protocol import Connection


@dataclass(slots=True)
class NodeState:
    """Per-node memory across polls; collectors keep what they need under their name."""

    kept: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeContext:
    target: str  # the target's name
    node: str  # the node's label value (configured name or index)
    conn: Connection
    state: NodeState
    canary_key: str  # this exporter process's own canary key on this node
    canary_ttl: int
