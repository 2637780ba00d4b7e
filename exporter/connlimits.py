"""Connection limits for the HTTP listener: what a server facing untrusted clients needs.

aiohttp alone keeps an idle connection for about an hour and never bounds the time a
client may take to send its request headers, so a few hundred idle or slow sockets
use up every file descriptor: scrapes stop, targets cannot connect, and asyncio logs
each refused ``accept()`` in a tight loop. :class:`ConnectionGuard` wraps aiohttp's
protocol factory and adds:

* a **header-read timeout**: a connection that has not sent the complete headers of
  its first request within ``read_header_timeout`` is closed (later requests on a
  kept-alive connection are bounded by the idle timeout, which aiohttp counts from the
  end of the previous response and which trickled bytes do not extend);
* an **idle timeout** (aiohttp's ``keepalive_timeout``, set by the caller);
* a **cap on concurrent connections**, never above what the descriptor limit
  (``RLIMIT_NOFILE``) leaves after a reserve for the pollers. At the cap, a new
  connection first displaces the oldest connection that is not serving a request
  (one that never sent a request before one that did), so an idle or slow-header
  flood cannot lock a well-behaved scraper out; when every connection is busy
  serving, the new one gets an immediate ``503`` with ``Retry-After`` and is closed;
* **quiet degradation when descriptors run out anyway** (a leak, a limit lowered
  under us): asyncio's "socket.accept() out of system resource" report is logged
  once per interval with a count, instead of hundreds of lines per second, and
  asyncio keeps retrying the accept once a second on its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .logs import kv

log = logging.getLogger("sparki.web")

ACCEPT_ERROR = "socket.accept() out of system resource"


@dataclass(frozen=True)
class ServerLimits:
    """The listener's limits; the defaults suit Prometheus scraping every 10 s or more."""

    read_header_timeout: float = 5.0
    idle_timeout: float = 5.0
    max_connections: int = 512
    # Polls per second /probe may start per target (a burst of 5); 0 turns it off.
    probe_rate: float = 1.0
    # Descriptors kept for the pollers, the log and the process itself: at least this
    # many, or a quarter of the limit when that is more.
    fd_reserve: int = 64


ACCEPT_BATCH = 128  # at most: listen backlog, and what asyncio accepts in one loop pass


@dataclass(frozen=True)
class Budget:
    """How many connections the listener may hold, and accept per loop pass."""

    connections: int
    batch: int


def descriptor_budget(reserve: int, wanted: int) -> Budget:
    """Fit the listener into the soft RLIMIT_NOFILE.

    The room is the limit less the descriptors already open and a reserve for the
    pollers (at least ``reserve``, or a quarter of the limit). Out of it comes one
    accept batch: a displaced connection's descriptor is freed on the next loop pass,
    after up to a batch of new ones was accepted. The batch is also at most a third of
    the room, so a newcomer accepted in one pass is not displaced by the same pass's
    flood before its request is read.
    """
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return Budget(wanted, ACCEPT_BATCH)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return Budget(wanted, ACCEPT_BATCH)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 0
    room = max(2, soft - in_use - max(reserve, soft // 4))
    batch = min(ACCEPT_BATCH, max(1, room // 3))
    return Budget(max(1, min(wanted, room - batch)), batch)


def _refusal(cap: int) -> bytes:
    body = (
        f"too many connections: this exporter serves at most {cap} at once; retry in a second\n"
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol inside, with the guard's bookkeeping around it."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    # Private attributes of aiohttp's RequestHandler, read defensively: when they are
    # missing (another aiohttp), a connection counts as busy and is never displaced.
    def requests_started(self) -> int:
        if self.inner is None:
            return 0
        return int(getattr(self.inner, "_request_count", 1))

    def idle(self) -> bool:
        """True while the connection is not serving a request (waiting for one)."""
        if self.inner is None:
            return not self.closed
        if not hasattr(self.inner, "_current_request"):
            return False
        return getattr(self.inner, "_current_request", None) is None and not getattr(
            self.inner, "_messages", True
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard.admit(self):
            self.closed = True
            transport.write(self.guard.refusal)
            transport.close()
            return
        # aiohttp's protocol (and its task) is made when the first bytes arrive: a
        # socket that never sends anything costs only this small object and its timer.
        timeout = self.guard.limits.read_header_timeout
        if timeout > 0:
            self.timer = asyncio.get_running_loop().call_later(timeout, self._header_deadline)

    def _header_deadline(self) -> None:
        self.timer = None
        if self.closed or self.requests_started() > 0:
            return
        self.guard.timed_out += 1
        log.debug("closing a connection that sent no complete request headers in time")
        self.close()

    def close(self) -> None:
        """Drop the connection now (displaced or too slow)."""
        if self.closed:
            return
        self.closed = True
        self.guard.release(self)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.inner is None:
            assert self.transport is not None
            self.inner = self.guard.factory()
            self.inner.connection_made(self.transport)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            return self.inner.eof_received()
        return None  # closed without a request: the transport closes

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)


class ConnectionGuard:
    """Protocol factory for ``loop.create_server`` enforcing :class:`ServerLimits`."""

    def __init__(
        self, factory: Callable[[], asyncio.Protocol], limits: ServerLimits | None = None
    ) -> None:
        self.factory = factory
        self.limits = limits or ServerLimits()
        budget = descriptor_budget(self.limits.fd_reserve, self.limits.max_connections)
        self.cap = budget.connections
        self.batch = budget.batch
        if self.cap < self.limits.max_connections:
            log.warning(
                "connection limit lowered to fit the file descriptor limit",
                extra=kv(max_connections=self.cap, requested=self.limits.max_connections),
            )
        self.refusal = _refusal(self.cap)
        self.open: dict[_Guarded, None] = {}
        self.refused = 0
        self.displaced = 0
        self.timed_out = 0
        self._last_refusal_log = -math.inf

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self)

    def admit(self, conn: _Guarded) -> bool:
        """Make room for ``conn`` (displacing an idle connection if needed) or refuse it."""
        if len(self.open) >= self.cap:
            victim = self._idlest()
            if victim is None:
                self.refused += 1
                self._log_refusal()
                return False
            self.displaced += 1
            if victim.requests_started() > 0:
                log.debug("displacing an idle kept-alive connection to make room")
            victim.close()
        self.open[conn] = None
        return True

    def _idlest(self) -> _Guarded | None:
        never_served: _Guarded | None = None
        kept_alive: _Guarded | None = None
        for conn in self.open:  # oldest first
            if not conn.idle():
                continue
            if conn.requests_started() == 0:
                never_served = conn
                break
            if kept_alive is None:
                kept_alive = conn
        return never_served or kept_alive

    def release(self, conn: _Guarded) -> None:
        self.open.pop(conn, None)

    def _log_refusal(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._last_refusal_log >= 10.0:
            self._last_refusal_log = now
            log.warning(
                "refusing connections: every connection is busy",
                extra=kv(max_connections=self.cap, refused_total=self.refused),
            )

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.close()


def throttle_accept_errors(loop: asyncio.AbstractEventLoop, interval: float = 10.0) -> None:
    """Log asyncio's "out of system resource" accept failures once per ``interval``.

    asyncio reports every failed ``accept()`` (EMFILE, ENFILE, ENOBUFS, ENOMEM) and, in
    the versions we support, may report it up to its accept backlog times per event
    loop pass: without this, a descriptor shortage writes megabytes of log a second.
    Other reports go to the handler that was installed before.
    """
    previous = loop.get_exception_handler()
    last = -math.inf
    suppressed = 0

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last, suppressed
        if context.get("message") != ACCEPT_ERROR:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = loop.time()
        if now - last < interval:
            suppressed += 1
            return
        exc = context.get("exception")
        log.warning(
            "cannot accept connections: out of file descriptors or memory; "
            "retrying every second, scrapes already connected are still served",
            extra=kv(
                error=getattr(exc, "strerror", None) or str(exc),
                suppressed_since_last=suppressed,
            ),
        )
        last, suppressed = now, 0

    loop.set_exception_handler(handler)
