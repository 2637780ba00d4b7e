"""``/probe?target=NAME``: poll one configured target on demand (the multi-target pattern).

Only names from the configuration are accepted. Anything else (an address, a URL, an
unknown or empty name, a missing or repeated parameter, an unknown parameter) is
refused with 400 before anything is looked up, so a request can never make the
exporter connect somewhere (no server-side request forgery).

The poll runs through the target's own runner (:meth:`TargetRunner.probe`): the same
adapter code and the same connection, serialized with the scheduled polls by the
runner's lock, so the target's single connection is never used by two polls at once
and no second connection is opened. Counters that adapters derive from deltas between
polls (statement and command histograms) stay exact: a probe in between splits a
delta in two, it does not lose or repeat anything. The runner's state, which
``/metrics`` shows, is not touched by a probe. Concurrent probes of one target share
one poll.

The deadline is the smaller of the target's ``poll_timeout`` and Prometheus's
``X-Prometheus-Scrape-Timeout-Seconds`` less a margin for rendering and transfer.

Probes that start a poll are rate-limited per target (``--web.probe-rate``, a burst of
five): beyond it, 429 with ``Retry-After``. Joining a poll in flight is free.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from .adapter import PollError, Reason
from .exposition import exporter_families
from .metrics import merge_exposition, render_families
from .poller import ProbeResult, TargetRunner, TargetState

PARAMETERS = ("target", "adapter")
TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
MAX_MARGIN = 0.5  # seconds kept back from Prometheus's scrape timeout
PROBE_FAMILIES = (
    "sparki_up",
    "sparki_poll_duration_seconds",
    "sparki_last_poll_error_reason",
    "sparki_exporter_build_info",
)


class ProbeRequestError(ValueError):
    """A /probe request that is refused with 400; the message says why."""


class NotThisShard(ProbeRequestError):
    """A configured target that another shard polls: refused with 421, naming the shard."""


def _shown(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")


def select(
    query: Mapping[str, Any],
    keys: Sequence[str],
    runners: Sequence[TargetRunner],
    elsewhere: Mapping[str, Sequence[tuple[str, int]]] | None = None,
) -> TargetRunner:
    """The runner a /probe query names; ProbeRequestError for anything else.

    ``keys`` is every parameter name in the request, repeats included. ``elsewhere``
    (sharded) names the configured targets other shards poll: asking for one raises
    NotThisShard, which says which shard to ask instead.
    """
    for key in keys:
        if key not in PARAMETERS:
            raise ProbeRequestError(
                f"unknown parameter {_shown(key)}: /probe takes target=NAME and "
                "optionally adapter=NAME"
            )
    for key in PARAMETERS:
        if keys.count(key) > 1:
            raise ProbeRequestError(f"parameter {key} given {keys.count(key)} times; give it once")
    if "target" not in keys:
        raise ProbeRequestError(
            "missing parameter target: /probe?target=NAME polls the configured target NAME"
        )
    name = str(query["target"])
    adapter = str(query["adapter"]) if "adapter" in keys else None
    if not name:
        raise ProbeRequestError("target is empty: give a configured target name")
    matches = [
        r
        for r in runners
        if r.state.name == name and (adapter is None or r.state.adapter == adapter)
    ]
    if not matches and elsewhere:
        owners = sorted(
            {shard for a, shard in elsewhere.get(name, ()) if adapter is None or a == adapter}
        )
        if owners:
            raise NotThisShard(
                f"target {_shown(name)} is polled by shard {', '.join(map(str, owners))}, "
                "not by this one: probe it there"
            )
    if not matches:
        known = sorted({f"{r.state.adapter}/{r.state.name}" for r in runners})
        listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        what = f"target {_shown(name)}" + (f" of adapter {_shown(adapter)}" if adapter else "")
        raise ProbeRequestError(
            f"unknown {what}: /probe only polls configured targets, by name (the target "
            f"label), and never connects to an address given in a request. "
            f"Configured: {listed or 'none'}"
        )
    if len(matches) > 1:
        adapters = ", ".join(sorted(r.state.adapter for r in matches))
        raise ProbeRequestError(
            f"target {_shown(name)} is configured for several adapters ({adapters}): "
            "add &adapter=NAME"
        )
    return matches[0]


def deadline(header: str | None, poll_timeout: float) -> float:
    """Seconds the probe may take: min(poll_timeout, scrape timeout less a margin)."""
    if header is None or not header.strip():
        return poll_timeout
    try:
        scrape = float(header)
    except ValueError:
        raise ProbeRequestError(f"{TIMEOUT_HEADER} must be a number of seconds") from None
    if not math.isfinite(scrape) or scrape <= 0:
        raise ProbeRequestError(f"{TIMEOUT_HEADER} must be a positive number of seconds")
    margin = min(MAX_MARGIN, scrape * 0.1)
    return min(poll_timeout, scrape - margin)


@dataclass
class _View:
    state: TargetState


def render(runner: TargetRunner, result: ProbeResult, openmetrics: bool) -> bytes:
    """The probe's exposition: sparki_up and poll duration for the target, then its families."""
    src = runner.state
    state = TargetState(src.adapter, src.name, src.interval, src.timeout, src.stale_after)
    now = time.monotonic()
    state.polled = True
    state.last_duration = result.duration
    if result.error is None:
        state.snapshot, state.snapshot_time, state.up = True, now, True
    else:
        state.last_reason, state.last_error = result.error.reason, result.error.message
    own = [
        f
        for f in exporter_families([cast(TargetRunner, _View(state))], now)
        if f.name in PROBE_FAMILIES
    ]
    blocks = [render_families(own), result.rendered]
    return merge_exposition(blocks, openmetrics, eof=openmetrics)


class ProbeRateLimited(Exception):
    """A /probe that would start a poll beyond the target's rate: answer 429."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many probes of this target; retry in {retry_after}s")
        self.retry_after = retry_after


class Prober:
    """Runs probes; concurrent probes of one target share one poll.

    Each target has a token bucket: a probe that starts a poll takes a token (``burst``
    of them, refilled at ``rate`` per second); a probe that joins a poll in flight takes
    none. Without a token the request is refused with :class:`ProbeRateLimited`, so a
    hundred clients cannot make the exporter poll a server a hundred times a second.
    ``rate`` 0 turns the limit off.
    """

    def __init__(self, rate: float = 1.0, burst: int = 5) -> None:
        self._inflight: dict[TargetRunner, asyncio.Task[ProbeResult]] = {}
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: dict[TargetRunner, tuple[float, float]] = {}  # tokens, last refill

    def _take(self, runner: TargetRunner) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(runner, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[runner] = (tokens, now)
            raise ProbeRateLimited(max(1, math.ceil((1.0 - tokens) / self.rate)))
        self._buckets[runner] = (tokens - 1.0, now)
        if len(self._buckets) > 4096:  # runners come and go with reloads
            live = set(self._inflight) | {runner}
            self._buckets = {r: b for r, b in self._buckets.items() if r in live}

    async def probe(self, runner: TargetRunner, limit: float) -> ProbeResult:
        task = self._inflight.get(runner)
        if task is None or task.done():
            self._take(runner)
            task = asyncio.create_task(runner.probe(limit))
            self._inflight[runner] = task
            task.add_done_callback(partial(self._forget, runner))
        start = time.monotonic()
        try:
            # A joined probe may have started with a longer deadline: wait no longer
            # than this request's own.
            return await asyncio.wait_for(asyncio.shield(task), limit)
        except TimeoutError:
            error = PollError(Reason.TIMEOUT, f"poll did not finish within {limit:g}s")
            return ProbeResult((), time.monotonic() - start, error)

    def _forget(self, runner: TargetRunner, task: asyncio.Task[ProbeResult]) -> None:
        if self._inflight.get(runner) is task:
            del self._inflight[runner]
        if not task.cancelled():
            task.exception()

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
