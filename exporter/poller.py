"""Polling: every target on its own schedule, and the state /metrics renders from.

Each target has one asyncio task that sleeps until its next (jittered) slot, runs one
poll under a deadline, and stores the result. A poll never overlaps itself: the loop
awaits it, and a poll that ignores cancellation is abandoned only after its
connections are torn down. /metrics never waits on any of this; it reads whatever
the last poll left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .adapter import AdapterSpec, PollError, Reason, Target
from .config import GlobalConfig, TargetConfig
from .errtext import without_addresses
from .logs import kv, redact
from .metrics import RenderedFamily, render_families
from .resolver import CURRENT as RESOLVER
from .resolver import Resolver

log = logging.getLogger("sparki.poller")

# How long a cancelled poll may take to unwind before its connections are torn down.
CANCEL_GRACE = 1.0


@dataclass
class TargetState:
    """What the core knows about one target; read by /metrics and the landing page."""

    adapter: str
    name: str
    interval: float
    timeout: float
    stale_after: float
    snapshot: Any = None
    rendered: tuple[RenderedFamily, ...] = ()
    snapshot_time: float = 0.0  # monotonic
    up: bool = False
    polled: bool = False
    last_duration: float | None = None
    last_success: float | None = None  # wall clock
    last_attempt: float | None = None  # wall clock
    last_error: str | None = None
    last_reason: Reason | None = None
    errors: Counter[str] = field(default_factory=Counter)
    polls: int = 0

    def fresh(self, now: float | None = None) -> bool:
        """Whether the latest snapshot is recent enough to export."""
        if self.snapshot is None:
            return False
        now = time.monotonic() if now is None else now
        return now - self.snapshot_time <= self.stale_after

    def exported_up(self, now: float | None = None) -> bool:
        return self.up and self.fresh(now)


@dataclass(frozen=True, slots=True)
class PollEvent:
    """One finished poll, scheduled or on demand (/probe), as observers see it."""

    adapter: str
    target: str
    kind: str  # "scheduled" or "probe"
    start: float  # wall clock, Unix seconds
    duration: float
    error: PollError | None  # None: success


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of an on-demand poll; the runner's own state is left untouched."""

    rendered: tuple[RenderedFamily, ...]
    duration: float
    error: PollError | None


PollObserver = Callable[[PollEvent], None]


@dataclass(slots=True)
class _Attempt:
    snapshot: Any = None
    rendered: tuple[RenderedFamily, ...] = ()
    error: PollError | None = None
    duration: float = 0.0
    overran: bool = False  # the poll task is still unwinding: abandon it


class TargetRunner:
    """Runs one target's poll loop and keeps its :class:`TargetState`.

    Polls of one target never overlap: the scheduled loop and on-demand probes take
    the same lock, so an adapter's connection is only ever used by one poll at a time.
    """

    def __init__(
        self,
        spec: AdapterSpec,
        config: TargetConfig,
        global_config: GlobalConfig,
        observer: PollObserver | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        self.observer = observer
        self.target: Target = spec.target(config, global_config)
        interval = global_config.interval_for(config)
        self.state = TargetState(
            adapter=spec.name,
            name=config.name,
            interval=interval,
            timeout=global_config.timeout_for(config),
            stale_after=interval * global_config.stale_after_intervals,
        )
        self._task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[Any] | None = None
        self._lock = asyncio.Lock()
        self._abandoning: set[asyncio.Task[None]] = set()
        self.first_poll_done = asyncio.Event()
        # Host names resolve on this target's own threads, within most of its deadline,
        # so a DNS server that never answers costs only the targets that use it.
        self.resolver = Resolver(f"{spec.name}-{config.name}", 0.75 * self.state.timeout)

    def start(self) -> None:
        self._task = asyncio.create_task(
            self._loop(), name=f"poll-{self.spec.name}-{self.config.name}"
        )

    async def _loop(self) -> None:
        # Spread first polls over a short window so many targets do not start in step,
        # but stay quick so /readyz turns ready soon after start.
        await asyncio.sleep(random.uniform(0, min(self.state.interval * 0.1, 1.0)))
        next_at = time.monotonic()
        while True:
            await self.poll_once()
            next_at += self.state.interval
            now = time.monotonic()
            if next_at < now:  # fell behind (the host was suspended, say): realign
                next_at = now
            jitter = random.uniform(-0.05, 0.05) * self.state.interval
            await asyncio.sleep(max(0.0, next_at - now + jitter))

    async def _attempt(self, limit: float, kind: str) -> _Attempt:
        """Run one poll within ``limit`` seconds and render it; the caller holds the lock."""
        if self._poll_task is not None and not self._poll_task.done():
            # The previous poll is still unwinding: never start a second one beside it.
            return _Attempt(error=PollError(Reason.TIMEOUT, "previous poll still running"))
        start = time.monotonic()
        wall = time.time()
        out = _Attempt()
        context = contextvars.copy_context()
        context.run(RESOLVER.set, self.resolver)
        self._poll_task = asyncio.create_task(self.target.poll(), context=context)
        try:
            out.snapshot = await asyncio.wait_for(asyncio.shield(self._poll_task), limit)
        except TimeoutError:
            out.error = PollError(Reason.TIMEOUT, f"poll did not finish within {limit:g}s")
            out.overran = True
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                await self._abandon()
                raise
            # The poll itself was cancelled (the runner is stopping under a probe).
            out.error = PollError(Reason.OTHER, "poll cancelled: the target is being removed")
        except Exception as exc:
            out.error = exc if isinstance(exc, PollError) else self.spec.classify(exc)
            # What a failed poll still measured (PollError.snapshot) is exported, fresh,
            # while the target reads sparki_up 0.
            out.snapshot = getattr(out.error, "snapshot", None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.target.reset(), CANCEL_GRACE)
        out.duration = time.monotonic() - start
        if out.error is None or out.snapshot is not None:
            try:
                out.rendered = render_families(self.spec.families(out.snapshot))
            except Exception as exc:  # a bug in an adapter must not take the exporter down
                log.exception(
                    "rendering failed", extra=kv(adapter=self.state.adapter, target=self.state.name)
                )
                out.snapshot, out.rendered = None, ()
                out.error = out.error or PollError(Reason.OTHER, f"rendering failed: {exc}")
        self._notify(kind, wall, out)
        return out

    def _notify(self, kind: str, wall: float, attempt: _Attempt) -> None:
        if self.observer is None:
            return
        error = attempt.error
        if error is not None:
            error = PollError(error.reason, redact(without_addresses(error.message)))
        event = PollEvent(self.state.adapter, self.state.name, kind, wall, attempt.duration, error)
        try:
            self.observer(event)
        except Exception:  # an observer (tracing) must never break polling
            log.exception("poll observer failed", extra=kv(target=self.state.name))

    async def poll_once(self) -> None:
        """Run one poll under the deadline and record its outcome."""
        state = self.state
        async with self._lock:
            state.last_attempt = time.time()
            attempt = await self._attempt(state.timeout, "scheduled")
            if attempt.error is not None:
                # Record first: the target is down now, however long the unwinding takes.
                self._record_failure(attempt.error, attempt.duration)
                if attempt.snapshot is not None:  # a partial snapshot of the failed poll
                    state.snapshot = attempt.snapshot
                    state.rendered = attempt.rendered
                    state.snapshot_time = time.monotonic()
                if attempt.overran:
                    await self._abandon()
                return
        was_up = state.up
        state.snapshot = attempt.snapshot
        state.rendered = attempt.rendered
        state.snapshot_time = time.monotonic()
        state.up = True
        state.last_duration = attempt.duration
        state.last_success = time.time()
        state.last_error = None
        state.last_reason = None
        state.polls += 1
        self._mark_polled()
        if not was_up and state.polls > 1:
            log.info("target recovered", extra=kv(adapter=state.adapter, target=state.name))

    async def probe(self, limit: float) -> ProbeResult:
        """Poll now, on demand, within ``limit`` seconds (waiting for a running poll too).

        Shares the target (its connection and the counters deltas are derived from)
        with the scheduled loop, serialized by the lock; the runner's state, which
        /metrics shows, is not changed.
        """
        start = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                await self._lock.acquire()
        except TimeoutError:
            waited = PollError(
                Reason.TIMEOUT, f"the scheduled poll did not finish within {limit:g}s"
            )
            return ProbeResult((), time.monotonic() - start, waited)
        release = True
        try:
            remaining = max(0.001, limit - (time.monotonic() - start))
            attempt = await self._attempt(remaining, "probe")
            if attempt.overran:
                # Answer now; unwind the overrun poll in the background, still holding
                # the lock so the next poll waits for its connection to be torn down.
                release = False
                task = asyncio.create_task(self._abandon_and_release())
                self._abandoning.add(task)
                task.add_done_callback(self._abandoning.discard)
        finally:
            if release:
                self._lock.release()
        error = attempt.error
        if error is not None:
            error = PollError(error.reason, redact(without_addresses(error.message)))
        return ProbeResult(attempt.rendered, time.monotonic() - start, error)

    async def _abandon_and_release(self) -> None:
        try:
            await self._abandon()
        finally:
            self._lock.release()

    async def _abandon(self) -> None:
        """Cancel a poll that overran; tear its connections down if it will not stop."""
        task = self._poll_task
        if task is None or task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE)
        if not done:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.target.reset(), CANCEL_GRACE)
            await asyncio.wait({task}, timeout=CANCEL_GRACE)
        else:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.target.reset(), CANCEL_GRACE)
        if task.done() and not task.cancelled():
            task.exception()  # mark retrieved, it is reported as a timeout

    def _record_failure(self, error: PollError, duration: float) -> None:
        state = self.state
        message = redact(without_addresses(error.message))
        changed = (not state.polled) or state.up or state.last_error != message
        state.up = False
        state.last_duration = duration
        state.last_error = message
        state.last_reason = error.reason
        state.errors[error.reason.value] += 1
        self._mark_polled()
        if changed:  # one line when a target goes down or its error changes, not per poll
            log.warning(
                "poll failed",
                extra=kv(
                    adapter=state.adapter,
                    target=state.name,
                    reason=error.reason.value,
                    error=message,
                ),
            )

    def _mark_polled(self) -> None:
        self.state.polled = True
        self.first_poll_done.set()

    async def stop(self) -> None:
        """Stop polling and close the target's connections."""
        tasks = (self._task, self._poll_task, *self._abandoning)
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, CANCEL_GRACE)
        self.resolver.close()
        try:
            await asyncio.wait_for(self.target.close(), 2.0)
        except Exception as exc:
            log.warning(
                "close failed",
                extra=kv(
                    adapter=self.state.adapter, target=self.state.name, error=redact(str(exc))
                ),
            )
