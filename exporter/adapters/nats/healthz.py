"""Whether the server says JetStream is healthy (/healthz?js-enabled-only=true)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .context import NatsContext


async def collect(ctx: NatsContext) -> bool:
    data = await ctx.get_json("/healthz?js-enabled-only=true")
    return data.get("status") == "ok"


def families(target: str, healthy: bool) -> list[Metric]:
    f = GaugeMetricFamily(
        "sparki_nats_jetstream_healthy",
        "1 when /healthz?js-enabled-only=true answers ok; 0: JetStream off or unhealthy",
        labels=["target"],
    )
    f.add_metric([target], 1.0 if healthy else 0.0)
    return [f]
