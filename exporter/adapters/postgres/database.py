"""The ``database`` collector: pg_stat_database, one row per database.

Transactions and block reads feed the throughput and cache hit ratio panels; deadlocks,
temporary files and recovery conflicts are the per-database trouble counters
postgres_exporter users alert on (a deadlock aborts a transaction the application sees
fail; temporary files are queries spilling to disk past ``work_mem``; conflicts are
standby queries cancelled by replay).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...metrics import CounterMetricFamily, Metric
from .batch import QueryCollector, Rows
from .config import PostgresConfig

DATABASES_SQL = (
    "SELECT datname, xact_commit, xact_rollback, blks_hit, blks_read, "
    "coalesce(deadlocks, 0), coalesce(temp_files, 0), coalesce(temp_bytes, 0), "
    "coalesce(conflicts, 0) "
    "FROM pg_stat_database WHERE datname IS NOT NULL ORDER BY datname"
)
OWN_SQL = (DATABASES_SQL,)


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    datname: str
    xact_commit: int
    xact_rollback: int
    blks_hit: int
    blks_read: int
    deadlocks: int = 0
    temp_files: int = 0
    temp_bytes: int = 0
    conflicts: int = 0


Part = tuple[DatabaseStats, ...]


class Collector(QueryCollector):
    def __init__(self, config: PostgresConfig) -> None:
        self.config = config

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        return (DATABASES_SQL,)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        return tuple(DatabaseStats(str(r[0]), *(int(v or 0) for v in r[1:])) for r in results[0])


def families(part: Part, target: str) -> list[Metric]:
    t = target
    xact = CounterMetricFamily(
        "sparki_postgres_transactions",
        "Transactions by outcome",
        labels=["target", "datname", "outcome"],
    )
    hit = CounterMetricFamily(
        "sparki_postgres_blocks_hit", "Buffer cache hits", labels=["target", "datname"]
    )
    read = CounterMetricFamily(
        "sparki_postgres_blocks_read", "Blocks read from disk", labels=["target", "datname"]
    )
    deadlocks = CounterMetricFamily(
        "sparki_postgres_deadlocks",
        "Deadlocks detected (each aborted one of the transactions involved)",
        labels=["target", "datname"],
    )
    temp_files = CounterMetricFamily(
        "sparki_postgres_temp_files",
        "Temporary files created by queries spilling past work_mem",
        labels=["target", "datname"],
    )
    temp_bytes = CounterMetricFamily(
        "sparki_postgres_temp_written_bytes",
        "Bytes written to temporary files by queries spilling past work_mem",
        labels=["target", "datname"],
    )
    conflicts = CounterMetricFamily(
        "sparki_postgres_conflicts",
        "Queries cancelled by recovery conflicts (on a standby; 0 on a primary)",
        labels=["target", "datname"],
    )
    for db in part:
        xact.add_metric([t, db.datname, "commit"], db.xact_commit)
        xact.add_metric([t, db.datname, "rollback"], db.xact_rollback)
        hit.add_metric([t, db.datname], db.blks_hit)
        read.add_metric([t, db.datname], db.blks_read)
        deadlocks.add_metric([t, db.datname], db.deadlocks)
        temp_files.add_metric([t, db.datname], db.temp_files)
        temp_bytes.add_metric([t, db.datname], db.temp_bytes)
        conflicts.add_metric([t, db.datname], db.conflicts)
    return [xact, hit, read, deadlocks, temp_files, temp_bytes, conflicts]
