"""Collector ``wraparound``: how close each database is to transaction ID wraparound.

Transaction IDs and multixact IDs are 32-bit counters compared modulo 2^32: a row
frozen by no VACUUM for 2^31 IDs would look as if it were in the future. PostgreSQL
refuses new transactions (a full outage of writes) before that, once fewer than about
3 million IDs remain (40 million with a loud WARNING first). ``age(datfrozenxid)`` is
how many XIDs ago the database's oldest unfrozen row may have been written, and
``mxid_age(datminmxid)`` the same for multixacts (created by row locks shared between
transactions, e.g. SELECT ... FOR SHARE and foreign keys).

The raw ages are exported (``pg_database`` is readable by every role); the share of
the 2^31 limit is computed by the shipped recording rules
(``target_datname:sparki_postgres_database_xid_age:wraparound_fraction`` and the mxid
one), as the metric contract wants ratios in rules, not in the exporter. Every database
counts, templates included: template0 ages too and autovacuum must freeze it as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import GaugeMetricFamily, Metric
from .batch import QueryCollector, Rows

# The distance PostgreSQL's 32-bit XID (and multixact ID) comparison can span.
WRAPAROUND_LIMIT = 2**31

AGES_SQL = (
    "SELECT datname, age(datfrozenxid)::float8, mxid_age(datminmxid)::float8"
    " FROM pg_database ORDER BY datname"
)
OWN_SQL: tuple[str, ...] = (AGES_SQL,)


@dataclass(frozen=True, slots=True)
class Part:
    ages: tuple[tuple[str, float, float], ...]  # (datname, xid age, mxid age)


class Collector(QueryCollector):
    def __init__(self, config: Any) -> None:
        self.config = config

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        return (AGES_SQL,)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        return Part(tuple((str(r[0]), float(r[1]), float(r[2])) for r in results[0]))


def families(part: Part, target: str) -> list[Metric]:
    xid = GaugeMetricFamily(
        "sparki_postgres_database_xid_age",
        "Transaction IDs since the database's oldest unfrozen XID, age(datfrozenxid);"
        " writes stop near 2^31",
        labels=["target", "datname"],
    )
    mxid = GaugeMetricFamily(
        "sparki_postgres_database_mxid_age",
        "Multixact IDs since the database's oldest unfrozen multixact, mxid_age(datminmxid);"
        " writes stop near 2^31",
        labels=["target", "datname"],
    )
    for datname, xid_age, mxid_age in part.ages:
        xid.add_metric([target, datname], xid_age)
        mxid.add_metric([target, datname], mxid_age)
    return [xid, mxid]
