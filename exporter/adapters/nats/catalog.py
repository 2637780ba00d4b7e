"""What the NATS adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
it must import no driver (nats-py) and nothing from exporter.generate at module level.
"""

from __future__ import annotations

from typing import Any

from ...catalog_model import Recording, Signal, quantiles
from ...collector import CollectorSpec

TITLE = "NATS"
# What the command line's --help names: the servers polled, and the variables any one
# of which configures a target without a config file (spec.from_env).
SERVERS = "NATS"
ENV_VARIABLES = ("NATS_URL",)

COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec("varz", "server connections, slow consumers, traffic and memory (/varz)"),
    CollectorSpec("jetstream", "streams and consumers: size vs limits, pending, lag (/jsz)"),
    CollectorSpec(
        "connz", "client connections: pending bytes by client, closures by reason (/connz)"
    ),
    CollectorSpec("healthz", "whether JetStream reports healthy (/healthz?js-enabled-only)"),
    CollectorSpec("canary", "a timed request/reply round trip through the server"),
)

CANARY = "sparki_nats_canary_duration_seconds"
CANARY_LATENCY = "target:" + CANARY + ":{q}_rate5m"
CANARY_RATE = f"target:{CANARY}:rate5m"
STREAM_UTIL = "sparki_nats_stream_bytes / sparki_nats_stream_max_bytes"
PENDING = "sparki_nats_consumer_pending_messages"
PENDING_GROWTH = f"deriv({PENDING}[10m])"
SLOW_RATE = "rate(sparki_nats_slow_consumers_total[5m])"
CANARY_FAILURES = "sparki_nats_canary_failures_total"
CANARY_ATTEMPTS = "target:sparki_nats_canary_attempts:rate5m"
CANARY_FAIL_RATIO = "target:sparki_nats_canary_failures:ratio_rate5m"

RECORDINGS: tuple[Recording, ...] = (
    *quantiles("nats", "target", CANARY, "5m", ""),
    Recording("nats", CANARY_RATE, f"rate({CANARY}_count[5m])"),
    # A failed request is not observed in the histogram: attempts are both together.
    Recording("nats", CANARY_ATTEMPTS, f"rate({CANARY_FAILURES}[5m]) + rate({CANARY}_count[5m])"),
    # Inline, not read from CANARY_ATTEMPTS: recordings never read recordings (order).
    Recording(
        "nats",
        CANARY_FAIL_RATIO,
        f"rate({CANARY_FAILURES}[5m])"
        f" / ((rate({CANARY_FAILURES}[5m]) + rate({CANARY}_count[5m])) > 0)",
    ),
)

SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="nats_jetstream_unavailable",
        adapter="nats",
        alert="SparkiNatsJetStreamUnavailable",
        title="NATS JetStream healthy",
        value="sparki_nats_jetstream_healthy",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target",),
        summary="JetStream on NATS {{ $labels.target }} is unavailable",
        description=(
            "sparki_nats_jetstream_healthy is [value] for [for]: /healthz?js-enabled-only=true"
            " on {{ $labels.target }} does not answer ok, so streams accept no publishes and"
            " consumers get nothing."
        ),
    ),
    Signal(
        key="nats_stream_bytes",
        adapter="nats",
        alert="SparkiNatsStreamNearLimit",
        title="NATS stream bytes / max_bytes",
        value=STREAM_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "stream"),
        summary="NATS stream {{ $labels.stream }} on {{ $labels.target }} over [threshold] full",
        description=(
            "Stream {{ $labels.stream }} on {{ $labels.target }} holds [value] of its"
            " max_bytes (threshold [threshold] for [for]); at the limit it discards old"
            " messages or refuses new ones."
        ),
    ),
    Signal(
        key="nats_consumer_falling_behind",
        adapter="nats",
        alert="SparkiNatsConsumerFallingBehind",
        title="NATS consumer pending growth",
        value=PENDING_GROWTH,
        direction="above",
        unit="per_second",
        # deriv() of a gauge is exact from two samples on; it does not ramp up while
        # its window fills as a rate() does, so the alert tests treat it as a gauge.
        window_minutes=0,
        labels=("target", "stream", "consumer"),
        summary=(
            "NATS consumer {{ $labels.consumer }} of {{ $labels.stream }} on"
            " {{ $labels.target }} falls behind"
        ),
        description=(
            "Pending messages of consumer {{ $labels.consumer }} of stream"
            " {{ $labels.stream }} on {{ $labels.target }} grow by [value] (threshold"
            " [threshold] for [for]) while a backlog already exists."
        ),
        guard=PENDING,
        symptom=False,
    ),
    Signal(
        key="nats_slow_consumers",
        adapter="nats",
        alert="SparkiNatsSlowConsumers",
        title="NATS slow consumers per second",
        value=SLOW_RATE,
        direction="above",
        unit="per_second",
        window_minutes=5,
        labels=("target",),
        summary="NATS {{ $labels.target }} keeps cutting off slow consumers",
        description=(
            "The server on {{ $labels.target }} marks clients as slow consumers at [value]"
            " (threshold [threshold] for [for]); they lose messages."
        ),
        symptom=False,
        counter_rate=True,
    ),
    Signal(
        key="nats_canary_latency",
        adapter="nats",
        alert="SparkiNatsCanaryLatencyHigh",
        title="NATS canary request/reply p95",
        value=CANARY_LATENCY.format(q="p95"),
        direction="above",
        unit="seconds",
        window_minutes=5,
        labels=("target",),
        summary="NATS request/reply p95 above [threshold] on {{ $labels.target }}",
        description=(
            "The exporter's request/reply round trip through {{ $labels.target }} has a"
            " 95th percentile of [value] (threshold [threshold] for [for])."
        ),
        guard=CANARY_RATE,
    ),
    Signal(
        key="nats_canary_failure_ratio",
        adapter="nats",
        alert="SparkiNatsCanaryFailing",
        title="NATS canary failure ratio",
        value=CANARY_FAIL_RATIO,
        direction="above",
        unit="ratio",
        window_minutes=5,
        labels=("target",),
        summary="NATS request/reply fails over [threshold] on {{ $labels.target }}",
        description=(
            "[value] of the exporter's canary requests through {{ $labels.target }} got no"
            " reply in time (threshold [threshold] for [for])."
        ),
        guard=CANARY_ATTEMPTS,
    ),
)


# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {"nats_canary_latency": CANARY}


def dashboard(thresholds: Any) -> dict[str, Any]:
    """The NATS board: polling, JetStream health, streams, consumers, server, canary."""
    from ...generate import dashboards as d

    t = d.T
    b = d.Board(
        thresholds,
        "sparki-nats",
        "Sparki storage / NATS",
        "NATS with JetStream targets: JetStream health, stream fill, consumer backlog,"
        " slow consumers and the request/reply canary.",
        [d.datasource_variable(), d.target_variable("nats")],
    )
    d.common_panels(b, "nats")
    b.row("JetStream")
    b.stat(
        "JetStream healthy",
        "none",
        "1 when /healthz?js-enabled-only=true answers ok.",
        [d.Query(f"sparki_nats_jetstream_healthy{t}", "{{target}}")],
        signal="nats_jetstream_unavailable",
        width=12,
        mappings=d.UP_MAPPINGS,
    )
    b.stat(
        "Streams / consumers",
        "none",
        "Streams and consumers exported (the rest are summed as other).",
        [
            d.Query(f"count by (target) (sparki_nats_stream_bytes{t})", "streams {{target}}"),
            d.Query(f"count by (target) ({PENDING}{t})", "consumers {{target}}"),
        ],
        width=12,
    )
    b.graph(
        "Stream bytes / max_bytes",
        "percentunit",
        "Fill of each stream with a max_bytes limit.",
        [
            d.Query(
                f"sparki_nats_stream_bytes{t} / sparki_nats_stream_max_bytes{t}",
                "{{target}} {{stream}}",
            )
        ],
        signal="nats_stream_bytes",
    )
    b.graph(
        "Consumer pending growth",
        "none",
        "deriv of pending messages over 10 minutes; above 0 the consumer falls behind.",
        [d.Query(f"deriv({PENDING}{t}[10m])", "{{target}} {{stream}}/{{consumer}}")],
        signal="nats_consumer_falling_behind",
    )
    b.graph(
        "Consumer pending and ack pending",
        "none",
        "Not yet delivered (pending) and delivered but unacknowledged (ack pending).",
        [
            d.Query(f"{PENDING}{t}", "pending {{stream}}/{{consumer}}"),
            d.Query(
                f"sparki_nats_consumer_ack_pending_messages{t}",
                "ack pending {{stream}}/{{consumer}}",
            ),
        ],
    )
    b.graph(
        "Consumer behind stream",
        "none",
        "Stream last sequence minus the last sequence delivered to the consumer.",
        [d.Query(f"sparki_nats_consumer_behind_messages{t}", "{{target}} {{stream}}/{{consumer}}")],
    )
    b.row("Server")
    b.graph(
        "Slow consumers per second",
        "none",
        "Clients the server cut off because they read too slowly.",
        [d.Query(f"rate(sparki_nats_slow_consumers_total{t}[{d.RATE}])", "{{target}}")],
        signal="nats_slow_consumers",
    )
    b.graph(
        "Connections / max_connections",
        "percentunit",
        "Client connections against the server's limit.",
        [d.Query(f"sparki_nats_connections{t} / sparki_nats_max_connections{t}", "{{target}}")],
    )
    b.row("Clients")
    b.graph(
        "Pending bytes by client",
        "bytes",
        "Bytes the server has queued for each client name (top_clients; the rest: other)."
        " A client that stays high is about to be cut off as a slow consumer.",
        [
            d.Query(f"sparki_nats_client_pending_bytes{t}", "{{target}} {{client}}"),
            d.Query(f"sparki_nats_pending_bytes{t}", "{{target}} all"),
        ],
    )
    b.graph(
        "Closed connections per second by reason",
        "none",
        "Why the server closed client connections; slow_consumer means it gave up on a"
        " client that read too slowly (see /connz?state=closed for which).",
        [
            d.Query(
                f"sum by (target, reason) (rate(sparki_nats_closed_connections_total{t}"
                f"[{d.RATE}])) > 0",
                "{{target}} {{reason}}",
            )
        ],
    )
    b.row("Canary")
    b.graph(
        "Request/reply p50 / p95 / p99",
        "s",
        "The exporter's own request/reply round trip through the server.",
        d.quantile_queries(CANARY_LATENCY, t, "{{target}}"),
        signal="nats_canary_latency",
    )
    b.graph(
        "Request/reply failure ratio",
        "percentunit",
        "Share of canary requests that got no reply within canary_timeout.",
        [d.Query(f"{CANARY_FAIL_RATIO}{t}", "{{target}}")],
        signal="nats_canary_failure_ratio",
    )
    return b.build()


def synth(signal: Signal, st: Any) -> Any:
    """promtool inputs whose signal value is v, for the generated alert tests."""
    from ...generate import promtests as p

    key = signal.key
    if key == "nats_jetstream_unavailable":
        labels = {"target": "events"}
        return p.Synth((p._gauge("sparki_nats_jetstream_healthy", labels),), labels)
    if key == "nats_stream_bytes":
        labels = {"target": "events", "stream": "BUILDLOGS"}
        return p.Synth(
            (
                p._gauge("sparki_nats_stream_bytes", labels, lambda v, m, s: float(round(v * 1e6))),
                p._gauge("sparki_nats_stream_max_bytes", labels, p._const(1e6)),
            ),
            labels,
            lambda v: round(v * 1e6) / 1e6,
        )
    if key == "nats_consumer_falling_behind":
        labels = {"target": "events", "stream": "BUILDLOGS", "consumer": "indexer"}
        return p.Synth(
            (p._gauge(PENDING, labels, lambda v, m, s: 100000.0 * s + v * 60 * m),),
            labels,
            volume=100000.0,
        )
    if key == "nats_slow_consumers":
        labels = {"target": "events"}
        return p.Synth(
            (
                p._counter(
                    "sparki_nats_slow_consumers_total", labels, lambda v, m, s: round(v * 60, 6)
                ),
            ),
            labels,
        )
    if key == "nats_canary_latency":
        h = p._Histogram(st)
        labels = {"target": "events"}
        return p.Synth(tuple(h.components(CANARY, [labels])), labels, h.realized, volume=h.volume)
    if key == "nats_canary_failure_ratio":
        labels = {"target": "events"}
        return p.Synth(
            tuple(
                p._ratio_counters(
                    (CANARY_FAILURES, labels),
                    [(f"{CANARY}_count", labels, lambda v: 1 - v)],
                    1.0,
                )
            ),
            labels,
            volume=1.0,
        )
    raise KeyError(f"no test input synthesizer for signal {key}")
