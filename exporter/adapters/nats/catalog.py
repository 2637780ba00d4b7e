"""What the NATS adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
it must import no driver (nats-py, aiohttp).
"""

from __future__ import annotations

from ...catalog_model import Recording, Signal
from ...collector import CollectorSpec

TITLE = "NATS"

COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec("varz", "server connections, slow consumers, traffic and memory (/varz)"),
    CollectorSpec("jetstream", "streams and consumers: size vs limits, pending, lag (/jsz)"),
    CollectorSpec("healthz", "whether JetStream reports healthy (/healthz?js-enabled-only)"),
    CollectorSpec("canary", "a timed request/reply round trip through the server"),
)

RECORDINGS: tuple[Recording, ...] = ()

SIGNALS: tuple[Signal, ...] = ()

# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {}
