"""The ``replication`` collector: the primary's replicas and a replica's link (INFO replication).

Reads only the poll's INFO. On a primary: how many replicas are connected and how far
each one's acknowledged offset is behind the primary's (bytes) and how long ago it
last acknowledged (seconds). On a replica: whether its link to the primary is up, for
how long it has been down, and how long ago it last heard from the primary.

A replica is named by its line in the primary's ``INFO replication`` (``slave0``,
``slave1``, ...), not by its address: host names and ports never become label values
(docs/redis.md). The operator finds the address on that line; the set is bounded by
the number of replicas (a replica that reconnects may take another line).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import GaugeMetricFamily, Metric
from .config import RedisConfig
from .context import NodeContext
from .replies import as_int, parse_fields
from .series import NodeFamilies, role_of


@dataclass(frozen=True, slots=True)
class Replica:
    name: str  # slaveN, its line in INFO replication
    lag_bytes: int
    lag_seconds: int | None
    online: bool


@dataclass(frozen=True, slots=True)
class ReplicationPart:
    role: str
    is_replica: bool  # INFO's own role, whatever the cluster label says
    connected_replicas: int
    offset: int  # master_repl_offset: this node's replication stream position
    link_up: bool | None = None  # replicas only
    last_io_seconds: int | None = None  # replicas with a link only
    link_down_seconds: int | None = None  # replicas whose link is down only
    replicas: tuple[Replica, ...] = ()


def parse_replicas(info: Mapping[str, str], offset: int) -> tuple[Replica, ...]:
    """The ``slaveN:ip=...,port=...,state=...,offset=...,lag=...`` lines of a primary."""
    out = []
    for key, value in info.items():
        if not (key.startswith("slave") and key[5:].isdigit()):
            continue
        fields = parse_fields(value)
        ip, port = fields.get("ip", ""), fields.get("port", "")
        if not ip or not port.isdigit():
            continue
        lag = fields.get("lag")
        out.append(
            Replica(
                name=key,
                lag_bytes=max(0, offset - as_int(fields.get("offset"))),
                lag_seconds=as_int(lag) if lag and lag.lstrip("-").isdigit() else None,
                online=fields.get("state") == "online",
            )
        )
    return tuple(sorted(out, key=lambda r: int(r.name[5:])))


class Collector:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config

    async def collect(self, ctx: NodeContext) -> ReplicationPart:
        info = ctx.info
        replica = info.get("role") == "slave"
        offset = as_int(info.get("master_repl_offset"))
        part = ReplicationPart(
            role=role_of(ctx.role),
            is_replica=replica,
            connected_replicas=as_int(info.get("connected_slaves")),
            offset=offset,
            replicas=parse_replicas(info, offset),
        )
        if not replica:
            return part
        link_up = info.get("master_link_status") == "up"
        last_io = as_int(info.get("master_last_io_seconds_ago", "-1"))
        down = info.get("master_link_down_since_seconds")
        return ReplicationPart(
            role=part.role,
            is_replica=True,
            connected_replicas=part.connected_replicas,
            offset=as_int(info.get("slave_repl_offset")) or offset,
            link_up=link_up,
            last_io_seconds=last_io if link_up and last_io >= 0 else None,
            link_down_seconds=as_int(down) if not link_up and down and down != "-1" else None,
            replicas=part.replicas,
        )


def families(parts: Sequence[tuple[str, Any]], target: str) -> list[Metric]:
    f = NodeFamilies(parts, target)
    lag_bytes = GaugeMetricFamily(
        "sparki_redis_replica_lag_bytes",
        "How far a connected replica's acknowledged offset is behind the primary's "
        "(master_repl_offset minus the replica's offset)",
        labels=f.names("replica"),
    )
    lag_seconds = GaugeMetricFamily(
        "sparki_redis_replica_lag_seconds",
        "Seconds since a connected replica last acknowledged (INFO slaveN lag)",
        labels=f.names("replica"),
    )
    for node, p in parts:
        for r in p.replicas:
            lag_bytes.add_metric(f.values(node, p, r.name), r.lag_bytes)
            if r.lag_seconds is not None:
                lag_seconds.add_metric(f.values(node, p, r.name), r.lag_seconds)
    return [
        f.gauge(
            "sparki_redis_connected_replicas",
            "Replicas connected to this server (connected_slaves)",
            lambda p: p.connected_replicas,
        ),
        f.gauge(
            "sparki_redis_replication_offset_bytes",
            "This server's replication offset (master_repl_offset; a replica's "
            "slave_repl_offset): bytes of the replication stream it has produced or applied",
            lambda p: p.offset,
        ),
        f.gauge(
            "sparki_redis_replication_link_up",
            "Replicas only: 1 when master_link_status is up, 0 when the link to the "
            "primary is down",
            lambda p: None if p.link_up is None else (1 if p.link_up else 0),
        ),
        f.gauge(
            "sparki_redis_replication_last_io_seconds",
            "Replicas only, link up: seconds since the last interaction with the primary "
            "(master_last_io_seconds_ago)",
            lambda p: p.last_io_seconds,
        ),
        f.gauge(
            "sparki_redis_replication_link_down_seconds",
            "Replicas only, link down: seconds since the link went down "
            "(master_link_down_since_seconds)",
            lambda p: p.link_down_seconds,
        ),
        lag_bytes,
        lag_seconds,
    ]
