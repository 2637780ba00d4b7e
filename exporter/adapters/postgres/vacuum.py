"""Collector ``vacuum``: the tables most in need of VACUUM, and autovacuum's capacity.

Dead tuples are row versions an UPDATE or DELETE left behind; until VACUUM removes
them they take space and slow scans. Per table of the database the exporter connects
to (``pg_stat_user_tables`` covers only the current database), the top
``vacuum_top_n`` tables by dead tuples (default 10) are exported with their schema and
name; the rest are summed under ``schemaname="other", relname="other"`` (present only
when there are more tables than N), so the label set is bounded whatever the schema.
The dead share is a recording rule (``target_table:sparki_postgres_table_dead_tuples:ratio``).

Seconds since the last (auto)vacuum and (auto)analyze are exported per top table; a
table never vacuumed (or analyzed) since its statistics were reset has *no* sample
rather than NaN or a huge number: an absent series reads honestly on a dashboard
("never") and an alert on it cannot fire on a made-up value.

``sparki_postgres_autovacuum_workers`` counts autovacuum workers running now, against
``sparki_postgres_autovacuum_max_workers``: all of them busy for long means autovacuum
cannot keep up and tables wait in line.

Every role may read pg_stat_user_tables (only tables it can see are listed), and the
backend_type of every session in pg_stat_activity: no privilege needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import GaugeMetricFamily, Metric
from .batch import QueryCollector, Rows

DEFAULT_TOP_N = 10

# {top_n} is an integer literal. pg_stat_statements' query identifier ignores constants,
# so every N gives the queryid of OWN_SQL's copy (N = DEFAULT_TOP_N).
TABLES_TEMPLATE = (
    "WITH t AS (SELECT schemaname, relname, n_live_tup, n_dead_tup,"
    " greatest(last_vacuum, last_autovacuum) AS vacuumed,"
    " greatest(last_analyze, last_autoanalyze) AS analyzed,"
    " row_number() OVER (ORDER BY n_dead_tup DESC, schemaname, relname) AS rank"
    " FROM pg_stat_user_tables)"
    " SELECT schemaname::text, relname::text, n_live_tup::float8, n_dead_tup::float8,"
    " extract(epoch FROM now() - vacuumed)::float8,"
    " extract(epoch FROM now() - analyzed)::float8, 1::bigint"
    " FROM t WHERE rank <= {top_n}"
    " UNION ALL"
    " SELECT 'other', 'other', coalesce(sum(n_live_tup), 0)::float8,"
    " coalesce(sum(n_dead_tup), 0)::float8, NULL, NULL, count(*)"
    " FROM t WHERE rank > {top_n}"
)
WORKERS_SQL = (
    "SELECT count(*) FILTER (WHERE backend_type = 'autovacuum worker'),"
    " current_setting('autovacuum_max_workers')::int, current_database()"
    " FROM pg_stat_activity"
)
OWN_SQL: tuple[str, ...] = (TABLES_TEMPLATE.format(top_n=DEFAULT_TOP_N), WORKERS_SQL)


@dataclass(frozen=True, slots=True)
class Table:
    schemaname: str
    relname: str
    live: float
    dead: float
    since_vacuum: float | None  # seconds; None when never vacuumed
    since_analyze: float | None  # seconds; None when never analyzed


@dataclass(frozen=True, slots=True)
class Part:
    datname: str
    tables: tuple[Table, ...]  # the top N, then "other" when more tables exist
    workers: int
    max_workers: int


def _seconds(value: Any) -> float | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return max(0.0, float(value))


class Collector(QueryCollector):
    def __init__(self, config: Any) -> None:
        top_n = int(getattr(config, "vacuum_top_n", DEFAULT_TOP_N))
        self.sql = TABLES_TEMPLATE.format(top_n=max(0, top_n))

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        return (self.sql, WORKERS_SQL)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        tables = tuple(
            Table(str(r[0]), str(r[1]), float(r[2]), float(r[3]), _seconds(r[4]), _seconds(r[5]))
            for r in results[0]
            if int(r[6]) > 0  # the "other" row when no table is left over
        )
        row = results[1][0] if results[1] else None
        workers, max_workers, datname = row if row else (0, 0, "")
        return Part(str(datname), tables, int(workers), int(max_workers))


def families(part: Part, target: str) -> list[Metric]:
    labels = ["target", "datname", "schemaname", "relname"]
    dead = GaugeMetricFamily(
        "sparki_postgres_table_dead_tuples",
        "Estimated dead row versions, top-N tables of the connected database (rest: other)",
        labels=labels,
    )
    live = GaugeMetricFamily(
        "sparki_postgres_table_live_tuples",
        "Estimated live rows of the same tables as sparki_postgres_table_dead_tuples",
        labels=labels,
    )
    vacuumed = GaugeMetricFamily(
        "sparki_postgres_table_last_vacuum_age_seconds",
        "Seconds since the table's last VACUUM or autovacuum; absent when never",
        labels=labels,
    )
    analyzed = GaugeMetricFamily(
        "sparki_postgres_table_last_analyze_age_seconds",
        "Seconds since the table's last ANALYZE or autoanalyze; absent when never",
        labels=labels,
    )
    for t in part.tables:
        values = [target, part.datname, t.schemaname, t.relname]
        dead.add_metric(values, t.dead)
        live.add_metric(values, t.live)
        if t.since_vacuum is not None:
            vacuumed.add_metric(values, t.since_vacuum)
        if t.since_analyze is not None:
            analyzed.add_metric(values, t.since_analyze)
    workers = GaugeMetricFamily(
        "sparki_postgres_autovacuum_workers",
        "Autovacuum workers running now",
        labels=["target"],
    )
    workers.add_metric([target], float(part.workers))
    max_workers = GaugeMetricFamily(
        "sparki_postgres_autovacuum_max_workers",
        "autovacuum_max_workers: how many autovacuum workers may run at once",
        labels=["target"],
    )
    max_workers.add_metric([target], float(part.max_workers))
    return [dead, live, vacuumed, analyzed, workers, max_workers]
