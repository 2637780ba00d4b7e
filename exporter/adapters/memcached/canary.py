"""The ``canary`` collector: time a set, a get and a delete of the exporter's own key.

Memcached keeps no latency statistics, so the exporter measures what a client sees:
each poll it stores a fresh random value under its own key (``<prefix>:<target>:
<node>:<process token>``, so two exporters never read each other's value) with a
short TTL, reads it back, checks it, and deletes it. Nothing is left behind: the delete
removes the key, and should the delete not happen (a timeout, a crash) the TTL does.

Each operation's round trip goes into a histogram per operation whose bounds include
the Redis latency thresholds (5 ms and 10 ms p95), which apply to a cache on the same
path. The first set, get and delete on a new connection are counted but not timed: they
pay for cold paths (and, at the exporter's start, for every target's first poll running
at once) that no pooled client sees, and a p95 over the few samples a restart leaves in
the window would be that one outlier. Attempts and failures are counted per operation;
a failure has a reason from a fixed set. A failure the server answers (SERVER_ERROR out
of memory with -M, say) is the canary's finding, not a failed collector; a connection
that breaks or hangs fails the node, after the attempt has been counted.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...bucket_edges import require_edges
from ...metrics import (
    CounterMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from .context import NodeContext
from .protocol import AuthFailed, ProtocolError, ServerReplyError

OPERATIONS = ("set", "get", "delete")
REASONS = ("server_error", "mismatch", "timeout", "connect", "protocol")
BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
require_edges(BUCKETS, "memcached_canary_latency")


class CanaryState:
    """One node's canary histograms and counters, accumulated across polls."""

    def __init__(self) -> None:
        self.histograms = {op: HistogramState(BUCKETS) for op in OPERATIONS}
        self.attempts = dict.fromkeys(OPERATIONS, 0)
        self.errors: dict[tuple[str, str], int] = {}
        self.warm_conn: object | None = None  # the connection whose round trips are timed

    def failed(self, op: str, reason: str) -> None:
        self.errors[(op, reason)] = self.errors.get((op, reason), 0) + 1

    def part(self) -> CanaryPart:
        return CanaryPart(
            tuple((op, self.histograms[op].snapshot()) for op in OPERATIONS),
            tuple(self.attempts.items()),
            tuple(sorted(self.errors.items())),
        )


@dataclass(frozen=True, slots=True)
class CanaryPart:
    histograms: tuple[tuple[str, HistogramSnapshot], ...]
    attempts: tuple[tuple[str, int], ...]
    errors: tuple[tuple[tuple[str, str], int], ...]


class _Mismatch(Exception):
    pass


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, ServerReplyError | AuthFailed):
        return "server_error"
    if isinstance(exc, _Mismatch):
        return "mismatch"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ProtocolError):
        return "protocol"
    return "connect"


def state_of(ctx: NodeContext) -> CanaryState:
    state = ctx.state.kept.get("canary")
    if not isinstance(state, CanaryState):
        state = ctx.state.kept["canary"] = CanaryState()
    return state


async def _timed(
    state: CanaryState, op: str, call: Callable[[], Awaitable[Any]], timed: bool = True
) -> Any:
    """Run one operation, count it and (``timed``) time it; a failure is counted, then
    raised."""
    state.attempts[op] += 1
    start = time.perf_counter()
    try:
        result = await call()
    except (Exception, asyncio.CancelledError) as exc:
        # Cancelled: the poll deadline passed inside this operation, a timeout for it.
        state.failed(op, "timeout" if isinstance(exc, asyncio.CancelledError) else reason_of(exc))
        raise
    if timed:
        state.histograms[op].observe(time.perf_counter() - start)
    return result


async def collect(ctx: NodeContext) -> CanaryPart:
    state = state_of(ctx)
    key, conn = ctx.canary_key, ctx.conn
    value = secrets.token_hex(8).encode()
    timed = state.warm_conn is conn
    state.warm_conn = conn

    async def check_get() -> None:
        got = await conn.get(key)
        if got != value:
            raise _Mismatch("the canary read back a different value or none")

    async def check_delete() -> None:
        if not await conn.delete(key):
            raise _Mismatch("the canary key was gone before its delete")

    try:
        await _timed(state, "set", lambda: conn.set(key, value, ctx.canary_ttl), timed)
    except (ServerReplyError, AuthFailed):
        return state.part()  # nothing stored, nothing to read or delete
    try:
        await _timed(state, "get", check_get, timed)
    except (ServerReplyError, _Mismatch):
        pass  # counted; the delete still runs so nothing is left behind
    try:
        await _timed(state, "delete", check_delete, timed)
    except (ServerReplyError, _Mismatch):
        pass
    return state.part()


def families(target: str, parts: Sequence[tuple[str, CanaryPart]]) -> list[Metric]:
    base = ["target", "node", "operation"]
    attempts = CounterMetricFamily(
        "sparki_memcached_canary_operations",
        "Canary operations (set, get, delete of the exporter's own key) attempted",
        labels=base,
    )
    errors = CounterMetricFamily(
        "sparki_memcached_canary_errors",
        "Canary operations that failed, by reason (server_error, mismatch, timeout, "
        "connect, protocol)",
        labels=[*base, "reason"],
    )
    for node, part in parts:
        for op, count in part.attempts:
            attempts.add_metric([target, node, op], count)
        for (op, reason), count in part.errors:
            errors.add_metric([target, node, op, reason], count)
    return [
        histogram_family(
            "sparki_memcached_canary_duration_seconds",
            "Round trip of the exporter's canary set, get and delete (successful ones)",
            base,
            (([target, node, op], h) for node, part in parts for op, h in part.histograms),
        ),
        attempts,
        errors,
    ]
