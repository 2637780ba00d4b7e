"""The server's own counters from /varz: connections, slow consumers, traffic, memory."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .context import MonitorError, NatsContext


@dataclass(frozen=True, slots=True)
class Varz:
    connections: int
    max_connections: int
    slow_consumers: int
    in_msgs: int
    out_msgs: int
    in_bytes: int
    out_bytes: int
    mem: int


async def collect(ctx: NatsContext) -> Varz:
    data = await ctx.get_json("/varz")
    try:
        return Varz(*(int(data[k]) for k in Varz.__slots__))
    except (KeyError, TypeError, ValueError) as exc:
        raise MonitorError(f"/varz lacks {exc}") from None


def families(target: str, v: Varz) -> list[Metric]:
    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        f = GaugeMetricFamily(name, doc, labels=["target"])
        f.add_metric([target], value)
        return f

    def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
        f = CounterMetricFamily(name, doc, labels=["target"])
        f.add_metric([target], value)
        return f

    return [
        gauge("sparki_nats_connections", "Client connections open now", v.connections),
        gauge(
            "sparki_nats_max_connections",
            "Connections the server accepts (max_connections)",
            v.max_connections,
        ),
        counter(
            "sparki_nats_slow_consumers",
            "Clients the server cut off or dropped messages for because they read too slowly",
            v.slow_consumers,
        ),
        counter("sparki_nats_received_messages", "Messages received from clients", v.in_msgs),
        counter("sparki_nats_sent_messages", "Messages sent to clients", v.out_msgs),
        counter("sparki_nats_received_bytes", "Payload bytes received from clients", v.in_bytes),
        counter("sparki_nats_sent_bytes", "Payload bytes sent to clients", v.out_bytes),
        gauge("sparki_nats_memory_bytes", "Resident memory of the server process", v.mem),
    ]
