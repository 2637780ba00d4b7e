"""The ``clients`` collector: connections, their limit, blocked clients, refusals.

``maxclients`` comes from INFO (Redis 7+ and Valkey list it in the clients section),
so no extra command and no extra ACL right is needed. Where INFO lacks it (older or
trimmed-down servers) the collector asks ``CONFIG GET maxclients``, as the latency
collector does for latency-tracking: a refusal is the ``config`` capability (retried
once a minute), the rest of the collector is still exported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import Metric
from .capability import Capability
from .config import RedisConfig
from .context import NodeContext
from .latency import refusal
from .replies import as_int, pairs, text
from .series import NodeFamilies, role_of


@dataclass(frozen=True, slots=True)
class ClientsPart:
    role: str
    connected: int
    blocked: int
    maxclients: int | None
    rejected: int
    capabilities: tuple[tuple[str, str | None], ...] = ()


class Collector:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.caps: dict[str, Capability] = {}  # node -> CONFIG GET, only where INFO lacks it
        self.maxclients: dict[str, int] = {}  # node -> last CONFIG GET answer

    async def collect(self, ctx: NodeContext) -> ClientsPart:
        info = ctx.info
        maxclients = as_int(info["maxclients"]) if "maxclients" in info else None
        caps: tuple[tuple[str, str | None], ...] = ()
        if maxclients is None:
            maxclients, caps = await self._config_maxclients(ctx)
        return ClientsPart(
            role=role_of(ctx.role),
            connected=as_int(info.get("connected_clients")),
            blocked=as_int(info.get("blocked_clients")),
            maxclients=maxclients,
            rejected=as_int(info.get("rejected_connections")),
            capabilities=caps,
        )

    async def _config_maxclients(
        self, ctx: NodeContext
    ) -> tuple[int | None, tuple[tuple[str, str | None], ...]]:
        cap = self.caps.setdefault(ctx.node, Capability())
        now = time.monotonic()
        if cap.due(now):
            try:
                reply = await ctx.call("CONFIG", "GET", "maxclients")
            except Exception as exc:
                if not refusal(exc):
                    raise
                cap.refused(exc, now)
                self.maxclients.pop(ctx.node, None)
            else:
                cap.problem = None
                found = dict(pairs(reply, "CONFIG GET")).get("maxclients")
                if found is not None:
                    self.maxclients[ctx.node] = as_int(text(found))
        return self.maxclients.get(ctx.node), (("config", cap.problem),)


def families(parts: Sequence[tuple[str, Any]], target: str) -> list[Metric]:
    f = NodeFamilies(parts, target)
    return [
        f.gauge("sparki_redis_connected_clients", "Client connections", lambda p: p.connected),
        f.gauge("sparki_redis_max_clients", "maxclients", lambda p: p.maxclients),
        f.gauge(
            "sparki_redis_blocked_clients",
            "Clients waiting in a blocking command (BLPOP, XREAD BLOCK, WAIT, ...)",
            lambda p: p.blocked,
        ),
        f.counter(
            "sparki_redis_rejected_connections",
            "Connections refused because maxclients was reached",
            lambda p: p.rejected,
        ),
    ]
