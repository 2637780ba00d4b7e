"""Label sets of the per-node Redis families, shared by the collectors.

A single server's series carry ``target`` only; a cluster target's carry ``node`` (the
short node id) and ``role`` too, as they always have. A collector's ``families(parts,
target)`` sees only the node label of each part, so every part that feeds a per-node
family has a ``role`` (from :attr:`NodeContext.role`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ...metrics import CounterMetricFamily, GaugeMetricFamily


class NodePart(Protocol):
    @property
    def role(self) -> str: ...


class NodeFamilies:
    """Builds families with the right label names and values for one target's parts."""

    def __init__(self, parts: Sequence[tuple[str, Any]], target: str) -> None:
        self.parts = list(parts)
        self.target = target
        self.cluster = any(node for node, _ in self.parts)

    def names(self, *extra: str) -> list[str]:
        base = ["target", "node", "role"] if self.cluster else ["target"]
        return [*base, *extra]

    def values(self, node: str, part: NodePart, *extra: str) -> list[str]:
        base = [self.target, node, part.role] if self.cluster else [self.target]
        return [*base, *extra]

    def gauge(self, name: str, doc: str, value: Callable[[Any], float | None]) -> GaugeMetricFamily:
        """One sample per node whose ``value(part)`` is not None."""
        fam = GaugeMetricFamily(name, doc, labels=self.names())
        for node, part in self.parts:
            v = value(part)
            if v is not None:
                fam.add_metric(self.values(node, part), v)
        return fam

    def counter(
        self, name: str, doc: str, value: Callable[[Any], float | None]
    ) -> CounterMetricFamily:
        fam = CounterMetricFamily(name, doc, labels=self.names())
        for node, part in self.parts:
            v = value(part)
            if v is not None:
                fam.add_metric(self.values(node, part), v)
        return fam


def role_of(role: str | None) -> str:
    """The role label value: the context's role, or ``unknown``."""
    return role or "unknown"
