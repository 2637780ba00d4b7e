"""What an S3 collector gets: :class:`S3Context`, and the :class:`S3Collector` base.

A collector module (``canary``, ``cloudwatch``, ...) defines ``Collector``, a subclass
of :class:`S3Collector` made once per target with the target's context, and
``families(target, bucket, part)``, which turns the part it handed to the snapshot
into metric families. The context is the collector's only way to the outside:

* ``await ctx.call(fn)`` runs a blocking boto3 call on the executor every S3 target
  shares, within this target's ``max_workers`` (``ctx.submit(fn)`` gives the future
  itself, for a result that must be recorded even after the poll gave up waiting);
* ``ctx.s3`` / ``ctx.cloudwatch``: the target's boto3 clients (made before the first
  collector runs); ``ctx.config``: the target's config; ``ctx.clock``: the wall clock;
* ``ctx.usage``: the request counters, sizes and object counts that CloudWatch, MinIO
  and the inventory fill and the cost collector prices;
* ``ctx.report(...)``: log once per change of a problem; ``ctx.source_result(...)``:
  the sparki_capability / sparki_s3_source_errors_total bookkeeping of a data source.

Nothing here imports boto3: the target makes the clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ...adapter import PollError
from ...logs import kv
from .config import S3Config
from .errors import classify
from .usage import Usage

log = logging.getLogger("sparki.s3")

T = TypeVar("T")


class SharedThreads:
    """One bounded thread pool for every S3 target's boto3 calls.

    A pool per target cost two to three threads each (20 targets ran 41 threads). The
    shared pool starts threads only as calls need them, up to ``size``; each target
    still runs at most its ``max_workers`` calls at once (see ``S3Context.submit``), so
    a hung endpoint holds at most that many threads, each until its read timeout. The
    pool is shut down when the last target closes and made again by the next one.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._users = 0

    def attach(self) -> None:
        with self._lock:
            self._users += 1

    def detach(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            pool = self._pool if self._users == 0 else None
            if pool is not None:
                self._pool = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.size, thread_name_prefix="sparki-s3"
                )
            return self._pool


# 16 threads: S3 calls take milliseconds, so a few threads serve dozens of targets; the
# rest is headroom for endpoints that hang until their read timeout.
SHARED_THREADS = SharedThreads(16)


class S3Context:
    """One target's clients, executor slots, shared counters and log-once memory."""

    def __init__(self, config: S3Config, timeout: float) -> None:
        self.config = config
        self.timeout = timeout
        # The target sets both below the poll timeout (botocore and aiohttp use them).
        self.connect_timeout = 0.3 * timeout
        self.read_timeout = 0.5 * timeout
        self.clock: Callable[[], float] = time.time  # wall clock for CloudWatch windows
        self.s3: Any = None
        self.cloudwatch: Any = None
        self.usage = Usage()
        self.reported: dict[str, str | None] = {}
        self.source_errors: Counter[tuple[str, str]] = Counter()
        self.source_ok: dict[str, bool] = {}
        self._slots = asyncio.Semaphore(config.max_workers)
        self.inflight: set[concurrent.futures.Future[Any]] = set()

    async def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Start ``fn`` on the shared pool once this target has a free slot.

        The slot is given back when the call really ends (in its thread), not when a
        waiter gives up on it: an abandoned call still holds a thread until it returns.
        """
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        try:
            call = SHARED_THREADS.pool().submit(fn)
        except BaseException:
            self._slots.release()
            raise
        self.inflight.add(call)

        def done(_: concurrent.futures.Future[Any]) -> None:
            self.inflight.discard(call)
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(self._slots.release)

        call.add_done_callback(done)
        return asyncio.wrap_future(call, loop=loop)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run a blocking call on the shared executor and wait for its result."""
        return await (await self.submit(fn))

    def report(self, key: str, problem: str | None, message: str, **fields: Any) -> None:
        """Log once per change of ``problem`` for ``key`` (None means fine again)."""
        if self.reported.get(key, "__unset__") == problem:
            return
        first = key not in self.reported
        self.reported[key] = problem
        if problem is None:
            if not first:
                log.info(message, extra=kv(target=self.config.name, **fields))
            return
        log.warning(message, extra=kv(target=self.config.name, problem=problem, **fields))

    def source_result(self, source: str, error: BaseException | None) -> PollError | None:
        """Record a data source's outcome: capability, error counter, one log line."""
        if error is None:
            self.source_ok[source] = True
            self.report(f"source:{source}", None, f"{source} metrics available again")
            return None
        failure = classify(error)
        self.source_ok[source] = False
        self.source_errors[(source, failure.reason.value)] += 1
        self.report(
            f"source:{source}",
            f"{failure.reason.value}:{failure.message}",
            f"{source} metrics unavailable; the canary and other sources continue",
            reason=failure.reason.value,
            error=failure.message,
        )
        return failure


class S3Collector:
    """One source of data of an S3 target; subclassed as ``Collector`` in its module.

    ``collect()`` does one poll's work (concurrently with the other collectors, under
    the poll deadline) and raises when it failed: the target then marks the collector
    failed and the rest of the poll goes on, except for a :class:`PollError` of the
    canary, which fails the poll. ``part()`` is called after every collector finished
    and returns what the snapshot keeps (immutable). ``SOURCE`` names a data source in
    sparki_s3_source_errors_total / sparki_capability (its failures are counted there).
    """

    SOURCE: str | None = None

    def __init__(self, ctx: S3Context) -> None:
        self.ctx = ctx

    async def collect(self) -> None:
        """One poll's work; the default has none (a collector that only prices or maps)."""

    def part(self) -> Any:
        return None

    def capabilities(self) -> list[tuple[str, bool]]:
        """sparki_capability rows this collector answers for."""
        return []

    async def close(self) -> None:
        """Release what the collector holds (tasks, sessions); best effort."""


class Periodic(Generic[T]):
    """Slow work on its own schedule, in a background task that no poll waits for.

    ``step(start)`` is called every poll: it hands back a finished run's outcome (once)
    and starts the next run when ``interval`` has passed since the last start. A bucket
    listing of 100,000 objects thus never costs a poll its deadline.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.task: asyncio.Task[T] | None = None
        self.next = 0.0  # monotonic

    def step(self, start: Callable[[], Awaitable[T]]) -> asyncio.Task[T] | None:
        """The run that finished since the last step (or None), after starting a due one."""
        finished = None
        if self.task is not None and self.task.done():
            finished, self.task = self.task, None
            if finished.cancelled():
                finished = None
        now = time.monotonic()
        if self.task is None and now >= self.next:
            self.next = now + self.interval
            self.task = asyncio.get_running_loop().create_task(_awaited(start))
        return finished

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
            self.task = None


async def _awaited(start: Callable[[], Awaitable[T]]) -> T:
    return await start()
