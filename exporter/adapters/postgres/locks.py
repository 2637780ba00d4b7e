"""Collector ``locks``: heavyweight locks by mode, granted or waiting, and who waits.

Read from ``pg_locks``, which every role may read in full (unlike pg_stat_activity),
so this collector needs no privilege. The exporter's own backend is left out: reading
pg_locks takes locks of its own. Every mode is exported for both states, 0 included,
so a series does not appear and vanish with the load and ``rate``/alerts see zeros.

``sparki_postgres_lock_waiting_backends`` counts backends with at least one ungranted
lock (a backend waits for one lock at a time, so this is the number of blocked
sessions); ``sparki_postgres_lock_wait_max_seconds`` is how long the longest of them
has waited (``pg_locks.waitstart``, PostgreSQL 14+; 0 when none waits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import GaugeMetricFamily, Metric
from .batch import QueryCollector, Rows

# The lock modes of PostgreSQL's lock manager (table-level modes plus SIReadLock of
# serializable transactions): a fixed set, so the `mode` label is bounded.
MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
    "SIReadLock",
)

LOCKS_SQL = (
    "SELECT mode, granted, count(*) FROM pg_locks"
    " WHERE pid IS DISTINCT FROM pg_backend_pid() GROUP BY mode, granted"
)
WAITING_SQL = (
    "SELECT count(DISTINCT pid),"
    " coalesce(extract(epoch FROM max(now() - waitstart)), 0)::float8"
    " FROM pg_locks WHERE NOT granted AND pid IS DISTINCT FROM pg_backend_pid()"
)
# PostgreSQL 13 has no waitstart: the count alone.
WAITING_SQL_13 = (
    "SELECT count(DISTINCT pid), 0::float8 FROM pg_locks"
    " WHERE NOT granted AND pid IS DISTINCT FROM pg_backend_pid()"
)
OWN_SQL: tuple[str, ...] = (LOCKS_SQL, WAITING_SQL, WAITING_SQL_13)


def own_sql(config: Any, version: int) -> tuple[str, ...]:
    """The statements this collector runs on a server of ``version``."""
    return (LOCKS_SQL, WAITING_SQL if version >= 140000 else WAITING_SQL_13)


@dataclass(frozen=True, slots=True)
class Part:
    locks: tuple[tuple[str, str, int], ...]  # (mode, "granted" | "waiting", count)
    waiting_backends: int
    wait_max_seconds: float


class Collector(QueryCollector):
    def __init__(self, config: Any) -> None:
        self.config = config

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        return (LOCKS_SQL, WAITING_SQL if version >= 140000 else WAITING_SQL_13)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        counts = {(m, s): 0 for m in MODES for s in ("granted", "waiting")}
        for mode, granted, count in results[0]:
            key = (str(mode) if mode in MODES else "other", "granted" if granted else "waiting")
            counts[key] = counts.get(key, 0) + int(count)
        row = results[1][0] if results[1] else None
        waiting, longest = (int(row[0]), float(row[1])) if row else (0, 0.0)
        return Part(tuple((m, s, n) for (m, s), n in counts.items()), waiting, longest)


def families(part: Part, target: str) -> list[Metric]:
    locks = GaugeMetricFamily(
        "sparki_postgres_locks",
        "Heavyweight locks held (state=granted) or awaited (state=waiting), by lock mode",
        labels=["target", "mode", "state"],
    )
    for mode, state, count in part.locks:
        locks.add_metric([target, mode, state], float(count))
    waiting = GaugeMetricFamily(
        "sparki_postgres_lock_waiting_backends",
        "Backends waiting for a heavyweight lock another backend holds",
        labels=["target"],
    )
    waiting.add_metric([target], float(part.waiting_backends))
    longest = GaugeMetricFamily(
        "sparki_postgres_lock_wait_max_seconds",
        "How long the longest current lock wait has lasted (PostgreSQL 14+; 0 when none)",
        labels=["target"],
    )
    longest.add_metric([target], part.wait_max_seconds)
    return [locks, waiting, longest]
