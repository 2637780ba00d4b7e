"""The ``activity`` collector: client connections by state (pg_stat_activity) and the
connection limit they count against.

A role without ``pg_read_all_stats`` sees other roles' sessions with ``backend_type``
and ``state`` NULL: those with a database and a user are sessions (background processes
have neither), counted as ``state="unknown"`` rather than dropped, so the utilization
alert still sees every connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...metrics import GaugeMetricFamily, Metric
from .batch import QueryCollector, Rows
from .config import PostgresConfig

CONNECTION_STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)
# One round trip: the slots clients can use (max_connections minus those reserved for
# superusers and, from 16 on, for roles with pg_use_reserved_connections), and the
# client backends by state as a JSON object.
CONNECTIONS_SQL = (
    "SELECT current_setting('max_connections')::int "
    "- current_setting('superuser_reserved_connections')::int "
    "- coalesce(current_setting('reserved_connections', true), '0')::int, "
    "(SELECT coalesce(json_object_agg(state, n), '{}') FROM ("
    "SELECT coalesce(state, 'unknown') AS state, count(*) AS n FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' "
    "OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL) GROUP BY 1) s)"
)
OWN_SQL = (CONNECTIONS_SQL,)


@dataclass(frozen=True, slots=True)
class Part:
    max_connections: int
    connections: tuple[tuple[str, int], ...]  # state -> client backends


class Collector(QueryCollector):
    def __init__(self, config: PostgresConfig) -> None:
        self.config = config

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        return (CONNECTIONS_SQL,)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        max_connections, counts = results[0][0]
        states = dict.fromkeys(CONNECTION_STATES, 0)
        for state, count in (counts or {}).items():
            states[str(state)] = int(count)
        return Part(int(max_connections), tuple(sorted(states.items())))


def families(part: Part, target: str) -> list[Metric]:
    conns = GaugeMetricFamily(
        "sparki_postgres_connections", "Client backends by state", labels=["target", "state"]
    )
    for state, count in part.connections:
        conns.add_metric([target, state], count)
    maxc = GaugeMetricFamily(
        "sparki_postgres_max_connections",
        "max_connections minus reserved superuser slots",
        labels=["target"],
    )
    maxc.add_metric([target], part.max_connections)
    return [conns, maxc]
