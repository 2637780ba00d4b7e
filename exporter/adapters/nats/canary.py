"""A request/reply round trip through the server on the target's private inbox subject.

The responder is the exporter's own subscription (made when it connects), so the time
measured is the server's routing of two messages: what every NATS client waits for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from ...metrics import HistogramSnapshot, histogram_family
from .context import NatsContext


@dataclass(frozen=True, slots=True)
class Canary:
    histogram: HistogramSnapshot
    failures: int
    ok: bool


async def collect(ctx: NatsContext) -> Canary:
    """Time one request; a timeout counts as a failure (a lost connection is fatal)."""
    import nats.errors

    start = time.perf_counter()
    ok = True
    try:
        await ctx.nc.request(ctx.inbox, b"sparki-canary", timeout=ctx.canary_timeout)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        ok = False
        ctx.canary.failures += 1
    else:
        ctx.canary.histogram.observe(time.perf_counter() - start)
    return Canary(ctx.canary.histogram.snapshot(), ctx.canary.failures, ok)


def families(target: str, c: Canary) -> list[Metric]:
    failures = CounterMetricFamily(
        "sparki_nats_canary_failures",
        "Canary requests that got no reply in time",
        labels=["target"],
    )
    failures.add_metric([target], float(c.failures))
    return [
        histogram_family(
            "sparki_nats_canary_duration_seconds",
            "Round trip of the canary request/reply through the server",
            ["target"],
            [([target], c.histogram)],
        ),
        failures,
    ]
