"""Collector ``connections``: client connections against max_connections.

From SHOW GLOBAL STATUS (no privilege needed): Threads_connected (every client
connection, the exporter's own included) against @@max_connections, as the
PostgreSQL adapter's pool thresholds read it; threads running (busy, not idle);
connections the server refused because max_connections was reached; aborted
connects (failed logins, handshake timeouts) and aborted clients (dropped without a
proper close).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import TargetConfig
from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .context import Context


@dataclass(frozen=True, slots=True)
class Part:
    connected: int
    max_connections: int
    max_used: int
    running: int
    aborted_connects: int
    aborted_clients: int
    refused: int


class Collector:
    def __init__(self, config: TargetConfig) -> None:
        self.config = config

    async def collect(self, ctx: Context) -> Part:
        n = ctx.number
        return Part(
            connected=int(n("threads_connected")),
            max_connections=ctx.max_connections,
            max_used=int(n("max_used_connections")),
            running=int(n("threads_running")),
            aborted_connects=int(n("aborted_connects")),
            aborted_clients=int(n("aborted_clients")),
            refused=int(n("connection_errors_max_connections")),
        )


def families(target: str, part: Part) -> list[Metric]:
    t = [target]
    out: list[Metric] = []
    for name, doc, value in (
        (
            "connections",
            "Client connections (Threads_connected), the exporter's own included",
            part.connected,
        ),
        ("max_connections", "@@max_connections", part.max_connections),
        (
            "max_used_connections",
            "Most connections at once since the server started",
            part.max_used,
        ),
        (
            "threads_running",
            "Connections executing a statement now (Threads_running)",
            part.running,
        ),
    ):
        g = GaugeMetricFamily(f"sparki_mysql_{name}", doc, labels=["target"])
        g.add_metric(t, value)
        out.append(g)
    for name, doc, value in (
        (
            "aborted_connects",
            "Failed connection attempts (bad password, handshake timeout)",
            part.aborted_connects,
        ),
        ("aborted_clients", "Connections dropped without a proper close", part.aborted_clients),
        (
            "connections_refused",
            "Connections refused because max_connections was reached",
            part.refused,
        ),
    ):
        c = CounterMetricFamily(f"sparki_mysql_{name}", doc, labels=["target"])
        c.add_metric(t, value)
        out.append(c)
    return out
