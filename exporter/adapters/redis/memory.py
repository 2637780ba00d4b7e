"""The ``memory`` collector: used memory, its limit, RSS and fragmentation (INFO memory).

Reads only the poll's INFO. ``maxmemory`` 0 (Redis' default) means no limit but the
host's, so ``total_system_memory`` is exported as the fallback denominator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import Metric
from .config import RedisConfig
from .context import NodeContext
from .replies import as_float, as_int
from .series import NodeFamilies, role_of


@dataclass(frozen=True, slots=True)
class MemoryPart:
    role: str
    used: int
    maxmemory: int
    system: int | None  # INFO total_system_memory (Redis 3.2+)
    rss: int | None
    fragmentation: float | None


class Collector:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config

    async def collect(self, ctx: NodeContext) -> MemoryPart:
        info = ctx.info
        return MemoryPart(
            role=role_of(ctx.role),
            used=as_int(info.get("used_memory")),
            maxmemory=as_int(info.get("maxmemory")),  # 0 when unset, and exported as 0
            system=as_int(info["total_system_memory"]) if "total_system_memory" in info else None,
            rss=as_int(info["used_memory_rss"]) if "used_memory_rss" in info else None,
            fragmentation=as_float(info.get("mem_fragmentation_ratio")),
        )


def families(parts: Sequence[tuple[str, Any]], target: str) -> list[Metric]:
    f = NodeFamilies(parts, target)
    return [
        f.gauge(
            "sparki_redis_memory_used_bytes",
            "Memory allocated by the server (used_memory)",
            lambda p: p.used,
        ),
        f.gauge(
            "sparki_redis_memory_max_bytes",
            "maxmemory; 0 when unset (no limit)",
            lambda p: p.maxmemory,
        ),
        f.gauge(
            "sparki_redis_system_memory_bytes",
            "total_system_memory: the host's memory, the limit when maxmemory is unset",
            lambda p: p.system,
        ),
        f.gauge(
            "sparki_redis_memory_rss_bytes",
            "Memory the operating system gives the server (used_memory_rss)",
            lambda p: p.rss,
        ),
        f.gauge(
            "sparki_redis_memory_fragmentation_ratio",
            "used_memory_rss / used_memory (mem_fragmentation_ratio); well above 1 means "
            "fragmentation, below 1 means the server is swapping",
            lambda p: p.fragmentation,
        ),
    ]
