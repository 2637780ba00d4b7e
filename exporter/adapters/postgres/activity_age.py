"""Collector ``activity_age``: how old the oldest open transaction is, and the oldest
session idle inside one.

An open transaction pins the xmin horizon: VACUUM cannot remove any row version that
died after it started, in any table of the cluster, so tables bloat for as long as it
stays open, and the locks it holds block DDL and everything queued behind that DDL. A
session *idle* in a transaction is the usual culprit: an application that took a
connection from its pool, began, and forgot to commit.

Both are ages in seconds, 0 when there is none, so an alert compares one number per
target and a quiet server is not "absent":

- ``sparki_postgres_oldest_transaction_seconds``: now minus ``xact_start`` of the
  oldest client backend with an open transaction, whatever its state (an idle one holds
  the horizon as much as a running one);
- ``sparki_postgres_oldest_idle_in_transaction_seconds``: now minus ``state_change`` of
  the longest-idle session in state ``idle in transaction`` (or ``(aborted)``): how long
  the application has left it, as ``idle_in_transaction_session_timeout`` counts it.

Only client backends count: autovacuum workers do not hold back other vacuums, and
the exporter's own backend (whose poll runs in a transaction) is left out.

Without pg_read_all_stats (pg_monitor has it) pg_stat_activity hides other roles'
sessions: their times are NULL. The ages then cover only the exporter's role's own
sessions, and ``sparki_postgres_activity_hidden_backends`` says how many were hidden,
so a dashboard can tell "no old transaction" from "cannot see".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import GaugeMetricFamily, Metric
from .batch import QueryCollector, Rows

# A hidden row (another role's session, without pg_read_all_stats) has a NULL
# backend_type; one with a database and a role is a client session (or its parallel
# worker), not a background process.
AGES_SQL = (
    "SELECT"
    " coalesce(extract(epoch FROM max(now() - xact_start)"
    " FILTER (WHERE backend_type = 'client backend')), 0)::float8,"
    " coalesce(extract(epoch FROM max(now() - state_change)"
    " FILTER (WHERE backend_type = 'client backend'"
    " AND state IN ('idle in transaction', 'idle in transaction (aborted)'))), 0)::float8,"
    " count(*) FILTER (WHERE backend_type IS NULL AND datid IS NOT NULL"
    " AND usesysid IS NOT NULL)"
    " FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
)
OWN_SQL: tuple[str, ...] = (AGES_SQL,)


@dataclass(frozen=True, slots=True)
class Part:
    oldest_transaction_seconds: float
    oldest_idle_in_transaction_seconds: float
    hidden_backends: int


class Collector(QueryCollector):
    def __init__(self, config: Any) -> None:
        self.config = config

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        return (AGES_SQL,)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        row = results[0][0] if results[0] else None
        if row is None:  # an aggregate always returns a row; be safe anyway
            return Part(0.0, 0.0, 0)
        return Part(max(0.0, float(row[0])), max(0.0, float(row[1])), int(row[2]))


def families(part: Part, target: str) -> list[Metric]:
    oldest = GaugeMetricFamily(
        "sparki_postgres_oldest_transaction_seconds",
        "Age of the oldest open transaction of a client backend (0 when none is open)",
        labels=["target"],
    )
    oldest.add_metric([target], part.oldest_transaction_seconds)
    idle = GaugeMetricFamily(
        "sparki_postgres_oldest_idle_in_transaction_seconds",
        "How long the longest-idle session has sat idle inside an open transaction (0: none)",
        labels=["target"],
    )
    idle.add_metric([target], part.oldest_idle_in_transaction_seconds)
    hidden = GaugeMetricFamily(
        "sparki_postgres_activity_hidden_backends",
        "Client backends whose activity the exporter's role may not see (grant pg_monitor)",
        labels=["target"],
    )
    hidden.add_metric([target], float(part.hidden_backends))
    return [oldest, idle, hidden]
