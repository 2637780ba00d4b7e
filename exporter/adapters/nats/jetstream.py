"""Streams and consumers from /jsz: size against limits, pending work, how far behind.

Stream and consumer names are user data: only the top ``top_streams`` streams (by
bytes) and ``top_consumers`` consumers (by pending) keep their names; the rest are
summed under ``other`` so a server with thousands of consumers cannot blow up the
series count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .context import MonitorError, NatsContext

OTHER = "other"


@dataclass(frozen=True, slots=True)
class Stream:
    name: str
    messages: int
    bytes: int
    max_bytes: int  # 0: unlimited (summed `other` keeps 0)
    consumers: int


@dataclass(frozen=True, slots=True)
class Consumer:
    stream: str
    name: str
    pending: int
    ack_pending: int
    redelivered: int
    behind: int


@dataclass(frozen=True, slots=True)
class JetStream:
    enabled: bool
    streams: tuple[Stream, ...]
    consumers: tuple[Consumer, ...]


def _int(d: Any, key: str) -> int:
    v = d.get(key, 0) if isinstance(d, dict) else 0
    return int(v) if isinstance(v, int | float) else 0


def parse(data: dict[str, Any], top_streams: int, top_consumers: int) -> JetStream:
    """Reduce a /jsz answer to bounded label sets."""
    if data.get("disabled") or "config" not in data:
        return JetStream(False, (), ())
    streams: list[Stream] = []
    consumers: list[Consumer] = []
    for account in data.get("account_details") or []:
        for s in account.get("stream_detail") or []:
            if not isinstance(s, dict) or not isinstance(s.get("name"), str):
                raise MonitorError("/jsz stream without a name")
            state, config = s.get("state") or {}, s.get("config") or {}
            last_seq = _int(state, "last_seq")
            streams.append(
                Stream(
                    s["name"],
                    _int(state, "messages"),
                    _int(state, "bytes"),
                    max(_int(config, "max_bytes"), 0),
                    _int(state, "consumer_count"),
                )
            )
            for c in s.get("consumer_detail") or []:
                delivered = _int(c.get("delivered"), "stream_seq")
                consumers.append(
                    Consumer(
                        s["name"],
                        str(c.get("name", "")),
                        _int(c, "num_pending"),
                        _int(c, "num_ack_pending"),
                        _int(c, "num_redelivered"),
                        max(last_seq - delivered, 0),
                    )
                )
    streams.sort(key=lambda s: (-s.bytes, s.name))
    kept = streams[:top_streams]
    rest = streams[top_streams:]
    if rest:
        kept.append(
            Stream(
                OTHER,
                sum(s.messages for s in rest),
                sum(s.bytes for s in rest),
                0,
                sum(s.consumers for s in rest),
            )
        )
    named = {s.name for s in kept} - {OTHER}
    consumers.sort(key=lambda c: (-c.pending, c.stream, c.name))
    out: list[Consumer] = []
    others: dict[str, list[Consumer]] = {}
    for c in consumers:
        stream = c.stream if c.stream in named else OTHER
        if len(out) < top_consumers and stream != OTHER:
            out.append(c)
        else:
            others.setdefault(stream, []).append(c)
    for stream, group in sorted(others.items()):
        out.append(
            Consumer(
                stream,
                OTHER,
                sum(c.pending for c in group),
                sum(c.ack_pending for c in group),
                sum(c.redelivered for c in group),
                max(c.behind for c in group),
            )
        )
    return JetStream(True, tuple(kept), tuple(out))


async def collect(ctx: NatsContext) -> JetStream:
    data = await ctx.get_json("/jsz?streams=true&consumers=true&config=true")
    return parse(data, ctx.config.top_streams, ctx.config.top_consumers)


def families(target: str, js: JetStream) -> list[Metric]:
    enabled = GaugeMetricFamily(
        "sparki_nats_jetstream_enabled",
        "1 when JetStream is enabled on the server",
        labels=["target"],
    )
    enabled.add_metric([target], 1.0 if js.enabled else 0.0)
    out: list[Metric] = [enabled]
    sl = ["target", "stream"]
    specs = (
        ("sparki_nats_stream_messages", "Messages stored in the stream", "messages"),
        ("sparki_nats_stream_bytes", "Bytes stored in the stream", "bytes"),
        ("sparki_nats_stream_consumers", "Consumers of the stream", "consumers"),
    )
    for name, doc, attr in specs:
        f = GaugeMetricFamily(name, doc, labels=sl)
        for s in js.streams:
            f.add_metric([target, s.name], float(getattr(s, attr)))
        out.append(f)
    limit = GaugeMetricFamily(
        "sparki_nats_stream_max_bytes",
        "The stream's max_bytes limit; absent when unlimited",
        labels=sl,
    )
    for s in js.streams:
        if s.max_bytes > 0:
            limit.add_metric([target, s.name], float(s.max_bytes))
    out.append(limit)
    cl = ["target", "stream", "consumer"]
    cspecs = (
        (
            "sparki_nats_consumer_pending_messages",
            "Messages in the stream the consumer has not been delivered yet (num_pending)",
            "pending",
        ),
        (
            "sparki_nats_consumer_ack_pending_messages",
            "Messages delivered but not acknowledged yet",
            "ack_pending",
        ),
        (
            "sparki_nats_consumer_redelivered_messages",
            "Messages delivered more than once and still unacknowledged",
            "redelivered",
        ),
        (
            "sparki_nats_consumer_behind_messages",
            "Stream last sequence minus the last stream sequence delivered to the consumer",
            "behind",
        ),
    )
    for name, doc, attr in cspecs:
        f = GaugeMetricFamily(name, doc, labels=cl)
        for c in js.consumers:
            f.add_metric([target, c.stream, c.name], float(getattr(c, attr)))
        out.append(f)
    return out
