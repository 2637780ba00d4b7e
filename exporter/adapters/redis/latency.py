"""The ``latency`` collector: per-command latency histograms from LATENCY HISTOGRAM.

The command histogram is derived, not passed through. ``LATENCY HISTOGRAM`` (Redis 7+,
Valkey) keeps, per command, cumulative call counts at power-of-two microsecond edges
and only lists edges whose count rose. Each poll maps every reply onto one fixed bucket
set (an edge that is missing carries the count below it; +Inf is the call count),
takes the difference with the previous reply and adds it to histograms the exporter
owns. The sum comes from ``INFO commandstats`` (``usec``), which Redis updates with the
same measurement. The first reply is only a baseline. A restart (new ``run_id``),
``CONFIG RESETSTAT`` (``total_commands_processed`` going backwards, or the exporter's
own previous ``LATENCY HISTOGRAM`` call missing from the reply) or any count going
backwards for one command turn the reply into counts since the reset, so nothing the
exporter exports can ever decrease or go negative. Only the top-N commands by calls get
their own ``cmd``; the rest are added to ``cmd="other"``; a command's histogram is kept
while it is outside the top-N, so moving in and out never makes a series decrease.

LATENCY HISTOGRAM and CONFIG GET (the latency-tracking check) are capabilities
(:mod:`.capability`): when refused, the collector still succeeds without histograms.

The exporter's own commands (PING, INFO, LATENCY HISTOGRAM, and what the other
collectors send: CONFIG GET, SLOWLOG LEN/GET) are counted by the server like anyone
else's and appear under their own ``cmd`` (``info``, ``slowlog|get``, ...): one call
each per poll, never mixed into another command's histogram.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...adapter import PollError, Reason
from ...metrics import GaugeMetricFamily, HistogramSnapshot, Metric, histogram_family
from .capability import Capability
from .config import RedisConfig
from .context import NodeContext
from .replies import as_int, pairs, parse_fields, parse_info, text
from .series import NodeFamilies, role_of

# Upper edges (µs) that Redis 7 / Valkey report in LATENCY HISTOGRAM (hdr_histogram,
# log iteration from 1024 ns doubling; measured on 7.0, the top one is the 1 s clamp).
REDIS_EDGES_USEC = (
    1, 2, 4, 8, 16, 33, 66, 132, 264, 528, 1056, 2113, 4227, 8454, 16908, 33816,
    67633, 135266, 270532, 541065, 1073741,
)  # fmt: skip
# The exported bounds: Redis's own edges from 2 µs to 541 ms, so those are exact, plus
# 5 ms and 10 ms, the platform's warning and critical p95 lines. Redis has no edge
# there: they carry the count at the edge below (4.227 ms, 8.454 ms), a lower bound,
# so a p95 estimate can only err towards firing an alert, never towards missing one.
# Below 2 µs is noise; above 541 ms, Redis clamps at ~1.07 s, which +Inf covers.
COMMAND_BUCKETS_USEC = (
    2, 4, 8, 16, 33, 66, 132, 264, 528, 1056, 2113, 4227, 5000, 8454, 10000, 16908,
    33816, 67633, 135266, 270532, 541065,
)  # fmt: skip
COMMAND_BUCKETS = tuple(usec / 1e6 for usec in COMMAND_BUCKETS_USEC)
OTHER = "other"
# How LATENCY HISTOGRAM names the exporter's own call to it (see _own_call_missing).
OWN_COMMAND = "latency|histogram"


def parse_latency_histogram(reply: Any) -> dict[str, tuple[int, dict[int, int]]]:
    """Per command: (calls, {edge µs: cumulative count}) from LATENCY HISTOGRAM."""
    out: dict[str, tuple[int, dict[int, int]]] = {}
    for name, body in pairs(reply):
        command = text(name).lower()
        fields = {text(k): v for k, v in pairs(body)}
        edges = {
            _count(k, command, "histogram_usec edge"): _count(v, command, "histogram_usec count")
            for k, v in pairs(fields.get("histogram_usec", []))
        }
        out[command] = (_count(fields.get("calls", 0), command, "calls"), edges)
    return out


def _count(value: Any, command: str, field: str) -> int:
    """A non-negative integer from a reply, or a protocol error naming the field.

    A server or proxy that answers LATENCY HISTOGRAM with something else must fail
    the poll with a message an operator can act on, not a bare TypeError.
    """
    try:
        number = int(value.decode(errors="replace") if isinstance(value, bytes) else value)
    except (TypeError, ValueError, OverflowError):
        number = -1
    if number < 0 or isinstance(value, bool | float):
        raise PollError(
            Reason.PROTOCOL,
            f"LATENCY HISTOGRAM: {field} of {command!r} is {str(value)[:40]!r}, "
            "not a non-negative integer",
        )
    return number


def fill_buckets(
    edges: Mapping[int, int], calls: int, bounds_usec: Sequence[int] = COMMAND_BUCKETS_USEC
) -> tuple[int, ...]:
    """Cumulative counts at every bound, then +Inf (= calls), gaps filled.

    A bound takes the count of the largest Redis edge at or below it (a missing edge
    did not rise, so it carries the count below it); the result never decreases.
    """
    items = sorted(edges.items())
    out: list[int] = []
    i = running = 0
    for bound in bounds_usec:
        while i < len(items) and items[i][0] <= bound:
            running = max(running, items[i][1])
            i += 1
        out.append(running)
    top = max([running, calls, *(c for _, c in items)])
    out.append(top)
    return tuple(out)


def _per_bucket(cumulative: Sequence[int]) -> list[int]:
    return [c - (cumulative[i - 1] if i else 0) for i, c in enumerate(cumulative)]


@dataclass(frozen=True, slots=True)
class RawCommand:
    """One command's counters as Redis reported them at one poll."""

    calls: int
    cumulative: tuple[int, ...]  # at each bound, then +Inf
    usec: int


class _Accumulated:
    """A histogram owned by the exporter: per-bucket counts and a sum, only ever added to."""

    __slots__ = ("counts", "usec")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.usec = 0  # the sum in whole microseconds, as Redis counts it: no float drift

    def add(self, per_bucket: Sequence[int], usec: int) -> None:
        for i, count in enumerate(per_bucket):
            self.counts[i] += count
        self.usec += usec

    def snapshot(self, bounds: tuple[float, ...]) -> HistogramSnapshot:
        return HistogramSnapshot(bounds, tuple(self.counts), self.usec / 1e6)


class CommandHistograms:
    """Per-command histograms of one server, accumulated from LATENCY HISTOGRAM deltas."""

    def __init__(self, top_n: int, bounds_usec: Sequence[int] = COMMAND_BUCKETS_USEC) -> None:
        self.top_n = top_n
        self.bounds_usec = tuple(bounds_usec)
        self.bounds = tuple(b / 1e6 for b in self.bounds_usec)
        self.previous: dict[str, RawCommand] | None = None
        self.ranking: dict[str, int] = {}  # latest known cumulative calls per command
        self.acc: dict[str, _Accumulated] = {}
        self.other = _Accumulated(len(self.bounds) + 1)
        self.other_used = False
        self.top: tuple[str, ...] = ()

    def raw(
        self, histogram: Mapping[str, tuple[int, Mapping[int, int]]], usec: Mapping[str, int]
    ) -> dict[str, RawCommand]:
        previous = self.previous or {}
        out: dict[str, RawCommand] = {}
        for cmd, (calls, edges) in histogram.items():
            # No commandstats line yet (a race): keep the old sum; the next poll catches up.
            fallback = previous[cmd].usec if cmd in previous else 0
            out[cmd] = RawCommand(
                calls, fill_buckets(edges, calls, self.bounds_usec), usec.get(cmd, fallback)
            )
        return out

    def update(self, current: Mapping[str, RawCommand], reset: bool) -> None:
        """Add what happened since the previous reply; ``reset``: the server's stats restarted."""
        for cmd, raw in current.items():
            self.ranking[cmd] = raw.calls
        ranked = sorted(self.ranking, key=lambda c: (-self.ranking[c], c))
        top = set(ranked[: self.top_n])
        if len(ranked) > len(top):
            self.other_used = True
        size = len(self.bounds) + 1
        for cmd in top:
            self.acc.setdefault(cmd, _Accumulated(size))
        if self.previous is not None:  # the very first reply is only a baseline
            for cmd, raw in current.items():
                delta = self._delta(raw, None if reset else self.previous.get(cmd))
                if delta is None:
                    continue
                per_bucket, usec = delta
                (self.acc[cmd] if cmd in top else self.other).add(per_bucket, usec)
        self.previous = dict(current)
        self.top = tuple(sorted(top))

    @staticmethod
    def _delta(raw: RawCommand, prev: RawCommand | None) -> tuple[list[int], int] | None:
        if prev is not None:
            per_bucket = _per_bucket(
                [a - b for a, b in zip(raw.cumulative, prev.cumulative, strict=True)]
            )
            usec = raw.usec - prev.usec
            if raw.calls >= prev.calls and usec >= 0 and min(per_bucket) >= 0:
                return (per_bucket, usec) if any(per_bucket) or usec else None
        # New command, or its counters went backwards (reset): all of it is new.
        per_bucket = _per_bucket(raw.cumulative)
        if min(per_bucket) < 0:  # cannot happen with fill_buckets; never export it
            return None
        return per_bucket, max(0, raw.usec)

    def series(self) -> tuple[tuple[str, HistogramSnapshot], ...]:
        out = [(cmd, self.acc[cmd].snapshot(self.bounds)) for cmd in self.top]
        if self.other_used:
            out.append((OTHER, self.other.snapshot(self.bounds)))
        return tuple(out)


# --- one node's state across polls ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyPart:
    """One node's command histograms at one poll."""

    role: str
    commands: tuple[tuple[str, HistogramSnapshot], ...]
    commands_tracked: int | None  # unknown without LATENCY HISTOGRAM
    capabilities: tuple[tuple[str, str | None], ...]  # (name, problem or None)


class NodeLatency:
    """What the collector remembers about one node: histograms, run id, capabilities."""

    def __init__(self, top_n: int) -> None:
        self.commands = CommandHistograms(top_n)
        self.run_id: str | None = None
        self.total_commands: int | None = None
        self.tracking_off = False  # latency-tracking was "no" at the previous poll
        self.caps = {"latency_histogram": Capability(), "config": Capability()}

    async def collect(self, ctx: NodeContext) -> LatencyPart:
        now = time.monotonic()
        latency, config = self.caps["latency_histogram"], self.caps["config"]
        usec = {
            key[len("cmdstat_") :].lower(): int(float(parse_fields(value).get("usec", "0")))
            for key, value in parse_info(text(await ctx.call("INFO", "commandstats"))).items()
            if key.startswith("cmdstat_")
        }
        # The order of the old single pipeline: LATENCY HISTOGRAM, then CONFIG GET.
        latency_reply: Any = None
        want_latency = latency.due(now)
        if want_latency:
            try:
                latency_reply = await ctx.call("LATENCY", "HISTOGRAM")
            except Exception as exc:
                if not refusal(exc):
                    raise
                latency.refused(exc, now)
                want_latency = False
        tracking: str | None = None
        if config.due(now):
            try:
                config_reply = await ctx.call("CONFIG", "GET", "latency-tracking")
            except Exception as exc:
                if not refusal(exc):
                    raise
                config.refused(exc, now)
            else:
                config.problem = None
                values = dict(pairs(config_reply, "CONFIG GET"))
                found = values.get("latency-tracking")
                tracking = text(found) if found is not None else None
        if want_latency:
            disabled = tracking == "no"
            latency.problem = "disabled" if disabled else None
            # Our previous call went uncounted if tracking was off then (or is now).
            own_counted = not (disabled or self.tracking_off)
            self.tracking_off = disabled
            self._apply_latency(ctx.info, parse_latency_histogram(latency_reply), usec, own_counted)
        latency_ok = latency.problem is None
        return LatencyPart(
            role=role_of(ctx.role),
            commands=self.commands.series(),
            commands_tracked=len(self.commands.previous or {}) if latency_ok else None,
            capabilities=tuple((n, c.problem) for n, c in self.caps.items()),
        )

    def _apply_latency(
        self,
        info: Mapping[str, str],
        histogram: Mapping[str, tuple[int, Mapping[int, int]]],
        usec: Mapping[str, int],
        own_counted: bool = True,
    ) -> None:
        run_id = info.get("run_id")
        total = as_int(info.get("total_commands_processed"))
        reset = (
            (self.run_id is not None and run_id != self.run_id)
            or (self.total_commands is not None and total < self.total_commands)
            or (own_counted and _own_call_missing(self.commands.previous, histogram))
        )
        self.commands.update(self.commands.raw(histogram, usec), reset)
        self.run_id, self.total_commands = run_id, total


def refusal(exc: BaseException) -> bool:
    """An error reply (NOPERM, unknown command, ...): the connection is still fine."""
    from redis import exceptions as rexc

    return isinstance(exc, rexc.ResponseError)


def _own_call_missing(
    previous: Mapping[str, RawCommand] | None,
    histogram: Mapping[str, tuple[int, Mapping[int, int]]],
) -> bool:
    """Whether our previous LATENCY HISTOGRAM is missing from this reply: a CONFIG RESETSTAT.

    Redis counts a command after it replies, so the reply we kept does not include the
    call that produced it; the next reply must show at least one more. Fewer means the
    statistics were reset in between, however much traffic followed (on a young server,
    more calls after a reset than before leave every other count, and the total, higher
    than at the previous poll). A reply identical to the previous one is not a reset:
    with ``latency-tracking no`` nothing is counted, our own call included.
    """
    if previous is None:
        return False
    before = previous[OWN_COMMAND].calls if OWN_COMMAND in previous else 0
    now = histogram[OWN_COMMAND][0] if OWN_COMMAND in histogram else 0
    if now > before:
        return False
    return histogram.keys() != previous.keys() or any(
        previous[cmd].calls != calls for cmd, (calls, _) in histogram.items()
    )


# --- the collector interface ---------------------------------------------------------


class Collector:
    """Per target; one :class:`NodeLatency` per node label, kept across polls."""

    def __init__(self, config: RedisConfig) -> None:
        self.top_n = config.commands_top_n
        self.nodes: dict[str, NodeLatency] = {}

    async def collect(self, ctx: NodeContext) -> LatencyPart:
        node = self.nodes.get(ctx.node)
        if node is None:
            node = self.nodes[ctx.node] = NodeLatency(self.top_n)
        return await node.collect(ctx)


def families(parts: Sequence[tuple[str, Any]], target: str) -> list[Metric]:
    f = NodeFamilies(parts, target)
    hist = histogram_family(
        "sparki_redis_command_duration_seconds",
        "Server-side command latency from LATENCY HISTOGRAM, accumulated since the exporter "
        'started; the top-N commands by calls, the rest under cmd="other"',
        f.names("cmd"),
        ((f.values(node, p, cmd), h) for node, p in parts for cmd, h in p.commands),
    )
    tracked: GaugeMetricFamily = f.gauge(
        "sparki_redis_commands_tracked",
        "Distinct commands in LATENCY HISTOGRAM; more than commands_top_n means some are "
        'summed under cmd="other"',
        lambda p: p.commands_tracked,
    )
    return [hist, tracked]
