"""Name resolution on small executors of each target's own, with a deadline.

asyncio resolves host names with the blocking ``getaddrinfo`` on the loop's shared
default executor (a handful of threads). A DNS server that never answers holds each
lookup for the resolver's whole timeout (``options timeout:5 attempts:2`` in
resolv.conf: 10 s and more), so a few targets with unresolvable names fill that
executor, and every other use of it waits: lookups of healthy targets (even
``localhost``, answered from /etc/hosts), configuration reloads, password checks.

Here every target gets its own :class:`Resolver`: at most two lookups run at once
for it, at most four more wait, and a lookup that does not answer within a deadline
shorter than the target's poll timeout fails that poll with a clear message (the
thread is left to finish; the bounded queue keeps the number of stuck threads per
target bounded). A hung resolver therefore only affects the targets whose names go
through it. :func:`install` routes the loop's ``getaddrinfo`` (which psycopg,
redis-py and aiohttp all use) to the resolver of the target whose poll is running,
found through a context variable the poller sets; lookups outside any poll use a
shared fallback resolver, never the default executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import socket
from typing import Any

CURRENT: contextvars.ContextVar[Resolver | None] = contextvars.ContextVar(
    "sparki_resolver", default=None
)


class Resolver:
    """A bounded ``getaddrinfo`` for one target (or one group of callers)."""

    WORKERS = 2
    QUEUE = 4

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self.pending = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.WORKERS, thread_name_prefix=f"sparki-dns-{self.name}"[:40]
            )
        return self._executor

    def _done(self, _: asyncio.Future[Any]) -> None:
        self.pending -= 1

    async def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        """``socket.getaddrinfo`` on this resolver's threads, within its deadline."""
        if self.pending >= self.WORKERS + self.QUEUE:
            raise socket.gaierror(
                socket.EAI_AGAIN,
                f"name resolution is not answering ({self.pending} lookups still waiting)",
            )
        loop = asyncio.get_running_loop()
        call = functools.partial(socket.getaddrinfo, host, port, family, type, proto, flags)
        future = loop.run_in_executor(self._pool(), call)
        self.pending += 1
        # Counted until the thread really finishes: a timed-out lookup still holds it.
        future.add_done_callback(self._done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            raise socket.gaierror(
                socket.EAI_AGAIN, f"name resolution did not answer within {self.timeout:g}s"
            ) from None

    def close(self) -> None:
        """Let waiting lookups go; a lookup already running finishes on its own."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


FALLBACK = Resolver("other", 5.0)


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Send ``loop.getaddrinfo`` to the current target's resolver (idempotent).

    Assigned on the loop instance: asyncio's own connection code calls
    ``self.getaddrinfo``, and so do the drivers, so this one place covers them all.
    """
    if getattr(loop, "_sparki_resolver", False):
        return

    async def getaddrinfo(
        host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        resolver = CURRENT.get() or FALLBACK
        return await resolver.getaddrinfo(host, port, family, type, proto, flags)

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    loop._sparki_resolver = True  # type: ignore[attr-defined]
