"""Collector ``checkpoints``: checkpoints, the buffers they write, and WAL volume.

Checkpoints flush every dirty buffer; "requested" ones (forced by max_wal_size filling
up, or by CHECKPOINT) outnumbering "timed" ones mean max_wal_size is too small for the
write load, and each one is an I/O storm. The same metric names cover both homes of
these counters: ``pg_stat_bgwriter`` up to PostgreSQL 16, ``pg_stat_checkpointer``
from 17 (which split them out). Times are reported by PostgreSQL in milliseconds and
exported in seconds.

``pg_stat_wal`` (PostgreSQL 14+) adds WAL records, bytes and "buffers full" (a backend
had to write WAL itself because wal_buffers was full); on older servers those families
are simply not exported. All of these views are readable by every role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import CounterMetricFamily, Metric
from .batch import QueryCollector, Rows

BGWRITER_SQL = (
    "SELECT checkpoints_timed::float8, checkpoints_req::float8, buffers_checkpoint::float8,"
    " checkpoint_write_time::float8 / 1000, checkpoint_sync_time::float8 / 1000,"
    " buffers_clean::float8 FROM pg_stat_bgwriter"
)
CHECKPOINTER_SQL = (
    "SELECT c.num_timed::float8, c.num_requested::float8, c.buffers_written::float8,"
    " c.write_time::float8 / 1000, c.sync_time::float8 / 1000, b.buffers_clean::float8"
    " FROM pg_stat_checkpointer c, pg_stat_bgwriter b"
)
WAL_SQL = "SELECT wal_records::float8, wal_bytes::float8, wal_buffers_full::float8 FROM pg_stat_wal"
OWN_SQL: tuple[str, ...] = (BGWRITER_SQL, CHECKPOINTER_SQL, WAL_SQL)


def own_sql(config: Any, version: int) -> tuple[str, ...]:
    """The statements this collector runs on a server of ``version``."""
    first = CHECKPOINTER_SQL if version >= 170000 else BGWRITER_SQL
    return (first, WAL_SQL) if version >= 140000 else (first,)


@dataclass(frozen=True, slots=True)
class Wal:
    records: float
    bytes: float
    buffers_full: float


@dataclass(frozen=True, slots=True)
class Part:
    timed: float
    requested: float
    buffers_written: float
    write_seconds: float
    sync_seconds: float
    buffers_clean: float
    wal: Wal | None  # None before PostgreSQL 14


class Collector(QueryCollector):
    def __init__(self, config: Any) -> None:
        self.config = config

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        sql = CHECKPOINTER_SQL if version >= 170000 else BGWRITER_SQL
        return (sql, WAL_SQL) if version >= 140000 else (sql,)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        if not results[0]:
            raise RuntimeError("the checkpointer statistics view returned no row")
        row = results[0][0]
        wal = None
        if len(results) > 1 and results[1]:
            w = results[1][0]
            wal = Wal(float(w[0]), float(w[1]), float(w[2]))
        timed, requested, written, write_s, sync_s, clean = (float(v) for v in row)
        return Part(timed, requested, written, write_s, sync_s, clean, wal)


def families(part: Part, target: str) -> list[Metric]:
    checkpoints = CounterMetricFamily(
        "sparki_postgres_checkpoints",
        "Checkpoints completed or started, kind=timed (checkpoint_timeout) or requested"
        " (max_wal_size, CHECKPOINT)",
        labels=["target", "kind"],
    )
    checkpoints.add_metric([target, "timed"], part.timed)
    checkpoints.add_metric([target, "requested"], part.requested)
    out: list[Metric] = [checkpoints]
    for name, doc, value in (
        (
            "sparki_postgres_checkpoint_buffers_written",
            "Buffers written by checkpoints",
            part.buffers_written,
        ),
        (
            "sparki_postgres_checkpoint_write_seconds",
            "Time checkpoints spent writing files to disk",
            part.write_seconds,
        ),
        (
            "sparki_postgres_checkpoint_sync_seconds",
            "Time checkpoints spent syncing files to disk",
            part.sync_seconds,
        ),
        (
            "sparki_postgres_bgwriter_buffers_clean",
            "Buffers written by the background writer",
            part.buffers_clean,
        ),
    ):
        family = CounterMetricFamily(name, doc, labels=["target"])
        family.add_metric([target], value)
        out.append(family)
    if part.wal is not None:
        for name, doc, value in (
            ("sparki_postgres_wal_records", "WAL records generated", part.wal.records),
            ("sparki_postgres_wal_bytes", "WAL generated, in bytes", part.wal.bytes),
            (
                "sparki_postgres_wal_buffers_full",
                "Times WAL was written to disk because wal_buffers was full",
                part.wal.buffers_full,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["target"])
            family.add_metric([target], value)
            out.append(family)
    return out
