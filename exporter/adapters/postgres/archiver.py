"""Collector ``archiver``: whether WAL archiving works (``pg_stat_archiver``).

With ``archive_mode`` on, every finished WAL segment must be handed to
``archive_command`` (or archive_library) before PostgreSQL may recycle it. A failing
archiver breaks point-in-time recovery from that moment on, and the segments it cannot
archive stay in pg_wal until the disk is full and the server stops.

Exported: archived and failed counts (counters), seconds since the last success and
the last failure (absent while there was none since the statistics were reset), and
``sparki_postgres_archiver_enabled``: 1 where this server is meant to archive
(archive_mode ``always``, or ``on`` on a primary; a standby with ``on`` archives
nothing), so an alert can ignore servers that do not archive. Readable by every role.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .batch import QueryCollector, Rows

ARCHIVER_SQL = (
    "SELECT archived_count::float8, failed_count::float8,"
    " extract(epoch FROM now() - last_archived_time)::float8,"
    " extract(epoch FROM now() - last_failed_time)::float8,"
    " current_setting('archive_mode') = 'always'"
    " OR (current_setting('archive_mode') = 'on' AND NOT pg_is_in_recovery())"
    " FROM pg_stat_archiver"
)
OWN_SQL: tuple[str, ...] = (ARCHIVER_SQL,)


@dataclass(frozen=True, slots=True)
class Part:
    archived: float
    failed: float
    since_archived: float | None  # seconds; None when nothing archived yet
    since_failed: float | None  # seconds; None when no failure yet
    enabled: bool


def _age(value: Any) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return max(0.0, float(value))


class Collector(QueryCollector):
    def __init__(self, config: Any) -> None:
        self.config = config

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        return (ARCHIVER_SQL,)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        if not results[0]:
            raise RuntimeError("pg_stat_archiver returned no row")
        row = results[0][0]
        return Part(float(row[0]), float(row[1]), _age(row[2]), _age(row[3]), bool(row[4]))


def families(part: Part, target: str) -> list[Metric]:
    archived = CounterMetricFamily(
        "sparki_postgres_archiver_archived",
        "WAL files archived successfully",
        labels=["target"],
    )
    archived.add_metric([target], part.archived)
    failed = CounterMetricFamily(
        "sparki_postgres_archiver_failed",
        "Failed attempts to archive a WAL file",
        labels=["target"],
    )
    failed.add_metric([target], part.failed)
    enabled = GaugeMetricFamily(
        "sparki_postgres_archiver_enabled",
        "1 when this server archives WAL (archive_mode always, or on on a primary)",
        labels=["target"],
    )
    enabled.add_metric([target], 1.0 if part.enabled else 0.0)
    last_archive = GaugeMetricFamily(
        "sparki_postgres_archiver_last_archive_age_seconds",
        "Seconds since the last WAL file was archived; absent when none was",
        labels=["target"],
    )
    if part.since_archived is not None:
        last_archive.add_metric([target], part.since_archived)
    last_failure = GaugeMetricFamily(
        "sparki_postgres_archiver_last_failure_age_seconds",
        "Seconds since the last failed archive attempt; absent when none failed",
        labels=["target"],
    )
    if part.since_failed is not None:
        last_failure.add_metric([target], part.since_failed)
    return [archived, failed, enabled, last_archive, last_failure]
