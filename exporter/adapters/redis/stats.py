"""The ``stats`` collector: keyspace hits and misses, evictions, expirations, commands, keys.

Reads only the poll's INFO (stats and keyspace sections).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import GaugeMetricFamily, Metric
from .config import RedisConfig
from .context import NodeContext
from .replies import as_int, parse_fields
from .series import NodeFamilies, role_of


@dataclass(frozen=True, slots=True)
class StatsPart:
    role: str
    evicted_keys: int
    expired_keys: int
    keyspace_hits: int
    keyspace_misses: int
    commands_processed: int
    db_keys: tuple[tuple[str, int], ...]


class Collector:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config

    async def collect(self, ctx: NodeContext) -> StatsPart:
        info = ctx.info
        dbs = [
            (key[2:], as_int(parse_fields(value).get("keys")))
            for key, value in info.items()
            if key.startswith("db") and key[2:].isdigit()
        ]
        return StatsPart(
            role=role_of(ctx.role),
            evicted_keys=as_int(info.get("evicted_keys")),
            expired_keys=as_int(info.get("expired_keys")),
            keyspace_hits=as_int(info.get("keyspace_hits")),
            keyspace_misses=as_int(info.get("keyspace_misses")),
            commands_processed=as_int(info.get("total_commands_processed")),
            db_keys=tuple(sorted(dbs, key=lambda d: int(d[0]))),
        )


def families(parts: Sequence[tuple[str, Any]], target: str) -> list[Metric]:
    f = NodeFamilies(parts, target)
    keys = GaugeMetricFamily(
        "sparki_redis_db_keys", "Keys per logical database", labels=f.names("db")
    )
    for node, p in parts:
        for db, count in p.db_keys:
            keys.add_metric(f.values(node, p, db), count)
    return [
        f.counter(
            "sparki_redis_evicted_keys",
            "Keys evicted by the maxmemory policy",
            lambda p: p.evicted_keys,
        ),
        f.counter(
            "sparki_redis_keyspace_hits", "Successful key lookups", lambda p: p.keyspace_hits
        ),
        f.counter(
            "sparki_redis_keyspace_misses", "Failed key lookups", lambda p: p.keyspace_misses
        ),
        f.counter(
            "sparki_redis_commands_processed",
            "Commands processed by the server",
            lambda p: p.commands_processed,
        ),
        f.counter(
            "sparki_redis_expired_keys",
            "Keys removed because their TTL expired",
            lambda p: p.expired_keys,
        ),
        keys,
    ]
