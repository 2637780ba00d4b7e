"""Sharding: several exporter processes split one configuration's targets between them.

Every replica reads the same configuration and keeps the targets whose stable hash
falls to its shard, so a fleet needs no coordination: adding a target to the shared
config assigns it to exactly one shard. The hash is Lamping and Veach's jump
consistent hash of SHA-256 of ``adapter/name``: the same on every machine and Python
version (Python's ``hash()`` is salted per process), and going from N to N+1 shards
moves only about 1/(N+1) of the targets.

The shard index comes from ``--shard.index`` or, with ``--shard.index=auto``, from the
StatefulSet ordinal at the end of the host name (``sparki-exporter-4``): index is the
ordinal modulo the shard count, and the ordinal divided by the count is the copy within
the shard, so a StatefulSet of 2 x count pods runs every shard twice (an HA pair per
shard).

The two copies of a shard export the same series. Prometheus tells them apart by the
target label :data:`HA_LABEL` (set by the ServiceMonitor), never ``replica``: that one
is a contract label of the PostgreSQL and Redis replication families (the standby's
name), and a target label of the same name would push it aside to ``exported_replica``.
The same reason keeps the copy in ``sparki_exporter_shard_info`` under its own name,
``shard_replica``.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass

from .metrics import GaugeMetricFamily, Metric

_MASK = 0xFFFFFFFFFFFFFFFF
_ORDINAL = re.compile(r"-(\d+)$")

# The target label that tells the two copies of an HA pair apart (0 or 1). Prometheus
# drops it from alerts (alert_relabel_configs), so the pair's alerts are identical and
# Alertmanager sends one notification; Thanos Querier deduplicates queries on it
# (--query.replica-label), other stores' queries aggregate it away.
HA_LABEL = "sparki_replica"


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket in [0, buckets) of a 64-bit key."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def owner(adapter: str, name: str, count: int) -> int:
    """The shard, out of ``count``, that polls target ``adapter/name``."""
    digest = hashlib.sha256(f"{adapter}/{name}".encode()).digest()
    return jump_hash(int.from_bytes(digest[:8], "big"), count)


@dataclass(frozen=True)
class Shard:
    """This process's shard: ``index`` of ``count``, and its copy (``replica``) within the
    shard: the StatefulSet ordinal divided by ``count`` with ``--shard.index=auto``, else 0
    (the process cannot know which copy it is)."""

    index: int
    count: int
    replica: int = 0

    def owns(self, adapter: str, name: str) -> bool:
        return owner(adapter, name, self.count) == self.index

    def families(self) -> list[Metric]:
        info = GaugeMetricFamily(
            "sparki_exporter_shard_info",
            "Always 1; this process's shard, the shard count and its copy within the shard "
            "(from the StatefulSet ordinal with --shard.index=auto, else 0); the copies of "
            "a shard poll the same targets",
            labels=["shard", "shard_count", "shard_replica"],
        )
        info.add_metric([str(self.index), str(self.count), str(self.replica)], 1.0)
        return [info]


def parse(index: str | None, count: int | None, hostname: str | None = None) -> Shard | None:
    """The shard from the flags; None when not sharded. ValueError says what is wrong."""
    if index is None and count is None:
        return None
    if count is None:
        raise ValueError("--shard.index needs --shard.count")
    if count < 1:
        raise ValueError(f"--shard.count must be at least 1, not {count}")
    if index is None:
        raise ValueError("--shard.count needs --shard.index (a number, or auto)")
    if index == "auto":
        host = hostname if hostname is not None else socket.gethostname()
        match = _ORDINAL.search(host.split(".")[0])
        if match is None:
            raise ValueError(
                f"--shard.index=auto: host name {host!r} does not end in -ORDINAL "
                "(as a StatefulSet pod's does); give the index as a number"
            )
        ordinal = int(match.group(1))
        return Shard(ordinal % count, count, ordinal // count)
    if not index.isdigit() or int(index) >= count:
        raise ValueError(f"--shard.index must be auto or a number from 0 to {count - 1}")
    return Shard(int(index), count)
