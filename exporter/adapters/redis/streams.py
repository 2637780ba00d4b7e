"""Build-log streams: how long they are and whether their consumer groups keep up.

The platform's design streams build logs through Redis Streams (``build:<id>:logs``)
and archives them to PostgreSQL: a consumer group that stops reading, or reads and never
acknowledges, means logs that stop flowing to viewers and never reach the archive. No
server statistic says so, so this collector reads the streams of the configured key
patterns:

* discovery: ``SCAN ... TYPE stream`` examines ``scan_keys_per_poll`` keys per poll
  (never ``KEYS``), the cursor kept across polls; streams matching a configured pattern
  (Redis globs, first match wins) join the tracked set, up to ``max_streams``;
* refresh: each poll re-reads the ``streams_per_poll`` tracked streams it read least
  recently (all of them when there are fewer): ``XLEN``, ``XINFO GROUPS`` (pending,
  ``lag`` on Redis 7+ and Valkey, nil where the server cannot tell), and per group
  ``XPENDING`` (the oldest pending entry) and ``XRANGE`` after the group's last
  delivered id (the oldest entry not yet delivered); a stream that is gone is dropped;
* ages come from entry ids (their millisecond time) against the server's ``TIME``.

Labels stay bounded: the configured pattern (never the key) and the group name, the
``groups_top_n`` groups in the most streams by name, the rest summed under
``group="other"``. Per pattern and group: entries summed, pending summed, lag and
ages the maximum over the pattern's streams (the worst stream is the one to act on).

Off (no command sent) unless the target has ``streams`` with patterns. In a Redis
Cluster each primary is read with its own cursor; replicas are skipped (same keys).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from ...config import Strict
from ...logs import kv
from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .context import NodeContext
from .keyscan import Classifier, as_int, as_text, batch, glob_to_regex, skip_node

log = logging.getLogger("sparki.redis")

OTHER = "other"
# COUNT of one SCAN call; the per-poll budget is spent in these steps. Small enough that
# one call holds the server well under a millisecond (TYPE is checked per key examined).
SCAN_COUNT = 250
# The commands this collector sends, as LATENCY HISTOGRAM and commandstats name them.
OWN_COMMANDS = ("scan", "time", "xlen", "xinfo|groups", "xpending", "xrange")


class StreamsConfig(Strict):
    """Which streams to watch and how much a poll may read."""

    patterns: tuple[str, ...] = Field(
        (), description="Redis globs of the stream keys to watch, e.g. build:*:logs"
    )
    scan_keys_per_poll: int = Field(
        1000, ge=100, le=1_000_000, description="keys SCAN examines per poll to find streams"
    )
    streams_per_poll: int = Field(
        50, ge=1, le=10_000, description="tracked streams re-read per poll (least recent first)"
    )
    max_streams: int = Field(
        10_000, ge=1, description="streams tracked at most per node; more are not watched"
    )
    groups_top_n: int = Field(
        10, ge=0, le=1000, description="consumer groups with their own label; the rest: other"
    )

    @field_validator("patterns")
    @classmethod
    def _valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not pattern:
                raise ValueError("a pattern must be a non-empty Redis glob")
            glob_to_regex(pattern)
        if len(set(value)) != len(value):
            raise ValueError("a pattern is listed twice")
        return value


def config_of(config: Any) -> StreamsConfig | None:
    """The target's streams config when it names patterns, else None (collector off)."""
    conf = getattr(config, "streams", None)
    if isinstance(conf, dict):
        conf = StreamsConfig.model_validate(conf)
    if conf is None or not conf.patterns:
        return None
    return conf


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One consumer group of one stream at its last refresh."""

    name: str
    pending: int
    lag: int | None  # None: the server cannot tell (or Redis < 7)
    oldest_pending_ms: int | None  # id time of the oldest pending entry; None: none
    oldest_undelivered_ms: int | None  # id time of the first entry after last-delivered


@dataclass(frozen=True, slots=True)
class StreamStats:
    pattern: str
    length: int
    groups: tuple[GroupStats, ...]


@dataclass(frozen=True, slots=True)
class GroupPart:
    group: str
    streams: int
    pending: int
    lag: int | None
    pending_age: float  # seconds; 0 when nothing is pending
    undelivered_age: float  # seconds; 0 when the group has read everything


@dataclass(frozen=True, slots=True)
class PatternPart:
    pattern: str
    streams: int
    entries: int
    groups: tuple[GroupPart, ...]


@dataclass(frozen=True, slots=True)
class StreamsPart:
    patterns: tuple[PatternPart, ...] = ()
    passes: int = 0
    active: bool = False


class _NodeState:
    __slots__ = ("cursor", "full_logged", "passes", "tracked")

    def __init__(self) -> None:
        self.cursor = 0
        self.passes = 0
        # key -> its stats (None until first read); order = least recently read first
        self.tracked: dict[str, StreamStats | None] = {}
        self.full_logged = False


class Collector:
    """Finds the configured streams with SCAN and re-reads a bounded number per poll."""

    def __init__(self, config: Any) -> None:
        self.target = getattr(config, "name", "")
        self.config = config_of(config)
        self.classify = Classifier(self.config.patterns if self.config else ())
        self.nodes: dict[str, _NodeState] = {}

    async def collect(self, ctx: NodeContext) -> StreamsPart:
        conf = self.config
        if conf is None or skip_node(ctx):
            return StreamsPart()
        state = self.nodes.get(ctx.node)
        if state is None:
            state = self.nodes[ctx.node] = _NodeState()
        await self._discover(ctx, state, conf)
        now_ms = await self._refresh(ctx, state, conf)
        return self._part(state, conf, now_ms)

    async def _discover(self, ctx: NodeContext, state: _NodeState, conf: StreamsConfig) -> None:
        budget = conf.scan_keys_per_poll
        new: list[str] = []
        while budget > 0:
            count = min(SCAN_COUNT, budget)
            reply = await ctx.call("SCAN", state.cursor, "COUNT", count, "TYPE", "stream")
            budget -= count
            state.cursor = int(as_text(reply[0]))
            for raw in reply[1]:
                key = as_text(raw)
                if key not in state.tracked and self.classify(key) is not None:
                    new.append(key)
            if state.cursor == 0:
                state.passes += 1
                break
        room = conf.max_streams - len(state.tracked)
        if len(new) > room and not state.full_logged:
            state.full_logged = True
            log.warning(
                "more streams match than max_streams: the rest are not watched",
                extra=kv(target=self.target, node=ctx.node, max_streams=conf.max_streams),
            )
        # New streams first in line, so they are read in this very poll.
        state.tracked = {**dict.fromkeys(new[: max(0, room)]), **state.tracked}

    async def _refresh(self, ctx: NodeContext, state: _NodeState, conf: StreamsConfig) -> int:
        """Re-read the least recently read streams; the server's time in ms."""
        keys = list(state.tracked)[: conf.streams_per_poll]
        first: list[tuple[Any, ...]] = [("TIME",)]
        for key in keys:
            first += [("XLEN", key), ("XINFO", "GROUPS", key)]
        replies = await batch(ctx, first)
        now_ms = _time_ms(replies[0])
        found: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        for i, key in enumerate(keys):
            length, groups = replies[1 + 2 * i], replies[2 + 2 * i]
            if isinstance(length, Exception) or isinstance(groups, Exception):
                if _gone(length) or _gone(groups):
                    continue  # deleted, or now another type: dropped below
                raise groups if isinstance(groups, Exception) else length
            found[key] = (as_int(length) or 0, [_fields(g) for g in groups or []])
        second: list[tuple[Any, ...]] = []
        for key, (_, groups) in found.items():
            for g in groups:
                name = as_text(g.get("name", ""))
                last = as_text(g.get("last-delivered-id", "0-0"))
                second += [("XPENDING", key, name), ("XRANGE", key, f"({last}", "+", "COUNT", 1)]
        more = iter(await batch(ctx, second))
        for key in keys:
            state.tracked.pop(key, None)
        for key, (length, groups) in found.items():
            stats = []
            for g in groups:
                pending_reply, next_reply = next(more), next(more)
                stats.append(
                    GroupStats(
                        name=as_text(g.get("name", "")),
                        pending=as_int(g.get("pending")) or 0,
                        lag=as_int(g.get("lag")),
                        oldest_pending_ms=_oldest_pending(pending_reply),
                        oldest_undelivered_ms=_first_entry(next_reply),
                    )
                )
            pattern = self.classify(key) or OTHER
            state.tracked[key] = StreamStats(pattern, length, tuple(stats))  # to the back
        return now_ms

    def _part(self, state: _NodeState, conf: StreamsConfig, now_ms: int) -> StreamsPart:
        by_pattern: dict[str, list[StreamStats]] = {p: [] for p in conf.patterns}
        for stats in state.tracked.values():
            if stats is not None:
                by_pattern[stats.pattern].append(stats)
        parts = []
        for pattern, streams in by_pattern.items():
            groups = _aggregate(streams, conf.groups_top_n, now_ms)
            parts.append(PatternPart(pattern, len(streams), sum(s.length for s in streams), groups))
        return StreamsPart(tuple(parts), state.passes, active=True)


def _aggregate(streams: Sequence[StreamStats], top_n: int, now_ms: int) -> tuple[GroupPart, ...]:
    """Per group over a pattern's streams; groups beyond the top-N summed under other."""
    members: dict[str, list[GroupStats]] = {}
    for stream in streams:
        for g in stream.groups:
            members.setdefault(g.name, []).append(g)
    ranked = sorted(members, key=lambda n: (-len(members[n]), n))
    top = set(ranked[:top_n])
    buckets: dict[str, list[GroupStats]] = {}
    for name in ranked:
        buckets.setdefault(name if name in top else OTHER, []).extend(members[name])
    out = []
    for name, gs in buckets.items():
        lags = [g.lag for g in gs if g.lag is not None]
        out.append(
            GroupPart(
                group=name,
                streams=len(gs),
                pending=sum(g.pending for g in gs),
                lag=max(lags) if lags else None,
                pending_age=_max_age([g.oldest_pending_ms for g in gs], now_ms),
                undelivered_age=_max_age([g.oldest_undelivered_ms for g in gs], now_ms),
            )
        )
    return tuple(out)


def _max_age(stamps: Sequence[int | None], now_ms: int) -> float:
    known = [s for s in stamps if s is not None]
    return max(0.0, (now_ms - min(known)) / 1000) if known else 0.0


def _time_ms(reply: Any) -> int:
    if isinstance(reply, Exception):
        raise reply
    seconds, micros = (int(as_text(v)) for v in reply[:2])
    return seconds * 1000 + micros // 1000


def _gone(reply: Any) -> bool:
    text = str(reply).lower() if isinstance(reply, Exception) else ""
    return "no such key" in text or "wrongtype" in text


def _fields(reply: Any) -> dict[str, Any]:
    """XINFO GROUPS' entry for one group: a RESP2 flat list or a RESP3 map."""
    if isinstance(reply, Mapping):
        return {as_text(k): v for k, v in reply.items()}
    items = list(reply)
    return {as_text(k): v for k, v in zip(items[0::2], items[1::2], strict=False)}


def _id_ms(entry_id: Any) -> int | None:
    if entry_id is None or isinstance(entry_id, Exception):
        return None
    head = as_text(entry_id).partition("-")[0]
    return int(head) if head.isdigit() else None


def _oldest_pending(reply: Any) -> int | None:
    """XPENDING's summary: [count, smallest id, greatest id, consumers]."""
    if isinstance(reply, Exception):
        if _gone(reply) or "nogroup" in str(reply).lower():
            return None  # the group was destroyed between the two round trips
        raise reply
    if not reply or not as_int(reply[0]):
        return None
    return _id_ms(reply[1])


def _first_entry(reply: Any) -> int | None:
    """XRANGE ... COUNT 1: [[id, fields]] or []."""
    if isinstance(reply, Exception):
        if _gone(reply):
            return None
        raise reply
    if not reply:
        return None
    return _id_ms(reply[0][0])


def families(parts: Sequence[tuple[str, StreamsPart]], target: str) -> list[Metric]:
    """Per pattern (and node of a cluster) stream gauges; per group its backlog."""
    active = [(node, part) for node, part in parts if part.active]
    cluster = any(node for node, _ in active)
    base = ["target", "node"] if cluster else ["target"]

    def key(node: str) -> list[str]:
        return [target, node] if cluster else [target]

    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*base, "pattern"])

    def group_gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*base, "pattern", "group"])

    keys = gauge("sparki_redis_stream_keys", "Streams of the pattern the exporter tracks")
    entries = gauge(
        "sparki_redis_stream_entries", "Entries (XLEN) summed over the pattern's streams"
    )
    streams = group_gauge(
        "sparki_redis_stream_group_streams", "Streams of the pattern that have this group"
    )
    pending = group_gauge(
        "sparki_redis_stream_group_pending_entries",
        "Entries delivered to the group but not acknowledged, summed over its streams",
    )
    lag = group_gauge(
        "sparki_redis_stream_group_lag_entries",
        "Entries not yet delivered to the group (XINFO GROUPS lag, Redis 7+ and Valkey), "
        "the largest over its streams; no series where the server cannot tell",
    )
    pending_age = group_gauge(
        "sparki_redis_stream_group_pending_age_seconds",
        "Age of the oldest entry delivered to the group and not acknowledged, the oldest "
        "over its streams; 0 when nothing is pending",
    )
    undelivered_age = group_gauge(
        "sparki_redis_stream_group_undelivered_age_seconds",
        "Age of the oldest entry not yet delivered to the group, the oldest over its "
        "streams; 0 when the group has read everything",
    )
    passes = CounterMetricFamily(
        "sparki_redis_stream_scan_passes",
        "Full SCAN passes stream discovery completed over the keyspace (a new stream is "
        "found within one pass)",
        labels=base,
    )
    for node, part in active:
        passes.add_metric(key(node), part.passes)
        for p in part.patterns:
            keys.add_metric([*key(node), p.pattern], p.streams)
            entries.add_metric([*key(node), p.pattern], p.entries)
            for g in p.groups:
                where = [*key(node), p.pattern, g.group]
                streams.add_metric(where, g.streams)
                pending.add_metric(where, g.pending)
                if g.lag is not None:
                    lag.add_metric(where, g.lag)
                pending_age.add_metric(where, g.pending_age)
                undelivered_age.add_metric(where, g.undelivered_age)
    return [keys, entries, streams, pending, lag, pending_age, undelivered_age, passes]
