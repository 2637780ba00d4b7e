"""Core fixtures: free ports, an in-process exporter, a TCP server that never answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import config as config_mod
from exporter.service import Exporter


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    interval: float = 0.1,
    *,
    retry_on: tuple[type[BaseException], ...] = (),
    what: str = "condition",
) -> Any:
    """Call ``predicate()`` until it returns something truthy, and return that.

    The one wait of the suite (``RunningExporter.wait_for`` is its async twin): fails
    with the last value seen once ``timeout`` passes. Only exceptions listed in
    ``retry_on`` are retried (a connection refused while a server starts, say); any
    other exception propagates at once, so a broken check fails in a second instead of
    turning into a long timeout with no clue.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")
        time.sleep(interval)


def process_sockets(port: int) -> int:
    """TCP sockets this process holds to ``port``, in any state: the in-process
    exporter's connections to a server (a leak shows as more than it should hold)."""
    import psutil

    return sum(
        1 for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HungServer:
    """Accepts TCP connections and never sends a byte: the worst kind of dead target."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        for c in self.accepted:
            c.close()
        self.sock.close()


@pytest.fixture
def hung_server() -> Iterator[HungServer]:
    server = HungServer()
    yield server
    server.close()


class RunningExporter:
    """An exporter started in the test's event loop, with helpers to scrape it."""

    def __init__(self, exporter: Exporter, session: aiohttp.ClientSession) -> None:
        self.exporter = exporter
        self.session = session

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.exporter.port}"

    async def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        async with self.session.get(self.url + path, **kwargs) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def scrape(self) -> str:
        status, _, body = await self.get("/metrics")
        assert status == 200
        return body.decode()

    async def families(self) -> dict[str, Any]:
        text = await self.scrape()
        return {f.name: f for f in text_string_to_metric_families(text)}

    async def samples(self, name: str, **labels: str) -> list[Any]:
        """Samples with this exact sample name whose labels include ``labels``."""
        text = await self.scrape()
        out = []
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    out.append(s)
        return out

    async def value(self, name: str, **labels: str) -> float | None:
        found = await self.samples(name, **labels)
        return found[0].value if found else None

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1
    ) -> Any:
        """Await ``predicate()`` (sync or async) until truthy; fail with its last value.

        The async twin of :func:`wait_until`: exceptions are not swallowed.
        """
        deadline = time.monotonic() + timeout
        while True:
            last = predicate()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
            if time.monotonic() >= deadline:
                raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
            await asyncio.sleep(interval)

    async def wait_value(
        self, name: str, want: float | None, timeout: float = 15.0, **labels: str
    ) -> None:
        """Wait until the sample ``name{labels}`` has value ``want`` (None: absent)."""

        async def check() -> bool:
            return await self.value(name, **labels) == want

        await self.wait_for(check, timeout)

    def runner(self, adapter: str, name: str) -> Any:
        for r in self.exporter.runners:
            if r.state.adapter == adapter and r.state.name == name:
                return r
        raise KeyError(name)

    async def polls(self, adapter: str, name: str, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until the target has completed ``count`` more polls (success or failure)."""
        st = self.runner(adapter, name).state
        start = st.polls + sum(st.errors.values())
        await self.wait_for(lambda: st.polls + sum(st.errors.values()) >= start + count, timeout)


@pytest.fixture
async def start_exporter() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await start_exporter({...config...})`` returns a RunningExporter."""
    started: list[RunningExporter] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def start(data: dict[str, Any], env: dict[str, str] | None = None) -> RunningExporter:
        cfg = config_mod.validate(data, env or {})
        exporter = Exporter(cfg)
        await exporter.start("127.0.0.1", 0)
        running = RunningExporter(exporter, session)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.exporter.stop()
    await session.close()


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], str]]:
    """All log output rendered through the exporter's own (redacting) formatter."""
    from exporter.logs import _Formatter

    caplog.set_level(logging.DEBUG)
    fmt = _Formatter(as_json=False)

    def text() -> str:
        return "\n".join(fmt.format(r) for r in caplog.records)

    yield text


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    out: list[float] = []
    start = time.monotonic()
    try:
        yield out
    finally:
        out.append(time.monotonic() - start)


class TcpProxy:
    """A TCP forwarder that can turn into a black hole, to make a live target hang.

    In black-hole mode it keeps accepting connections but forwards nothing in either
    direction, which is what a frozen server or a dropped network path looks like to a
    client: no error, no answer.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.holes = threading.Event()
        self._stop = False
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def blackhole(self, on: bool = True) -> None:
        if on:
            self.holes.set()
        else:
            self.holes.clear()
            for c in self._conns:  # drop frozen connections so clients reconnect cleanly
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            self._conns.append(client)
            if self.holes.is_set():
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._conns.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.holes.is_set() and not self._stop:
                    time.sleep(0.05)  # hold the bytes: the peer sees silence
                if self._stop:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop = True
        self.holes.clear()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()
        self.sock.close()


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[int], TcpProxy]]:
    """Factory: ``tcp_proxy(upstream_port)`` returns a started :class:`TcpProxy`."""
    proxies: list[TcpProxy] = []

    def make(port: int) -> TcpProxy:
        proxy = TcpProxy(port)
        proxies.append(proxy)
        return proxy

    yield make
    for p in proxies:
        p.close()
