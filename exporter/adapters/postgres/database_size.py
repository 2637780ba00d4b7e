"""Collector ``database_size``: the on-disk size of every database a client can use.

``pg_database_size`` walks a database's directory, so it costs a few stat calls per
relation file; on a server with few databases (Sparki has one or two) that is cheap.
Templates are left out: nobody stores data there and their size never changes.

A database the exporter's role may not CONNECT to (and without pg_read_all_stats, which
pg_monitor includes) is skipped instead of failing the whole query, so a role with
partial rights still gets the sizes it may read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import GaugeMetricFamily, Metric
from .batch import QueryCollector, Rows

SIZES_SQL = (
    "SELECT datname, CASE WHEN has_database_privilege(oid, 'CONNECT')"
    " OR pg_has_role('pg_read_all_stats', 'USAGE')"
    " THEN pg_database_size(oid)::float8 END"
    " FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname"
)
OWN_SQL: tuple[str, ...] = (SIZES_SQL,)


@dataclass(frozen=True, slots=True)
class Part:
    sizes: tuple[tuple[str, float], ...]  # (datname, bytes), readable databases only
    unreadable: int  # databases skipped for lack of privilege


class Collector(QueryCollector):
    def __init__(self, config: Any) -> None:
        self.config = config

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        return (SIZES_SQL,)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        rows = results[0]
        sizes = tuple((str(r[0]), float(r[1])) for r in rows if r[1] is not None)
        return Part(sizes, sum(1 for r in rows if r[1] is None))


def families(part: Part, target: str) -> list[Metric]:
    size = GaugeMetricFamily(
        "sparki_postgres_database_size_bytes",
        "On-disk size of each non-template database (pg_database_size)",
        labels=["target", "datname"],
    )
    for datname, value in part.sizes:
        size.add_metric([target, datname], value)
    return [size]
