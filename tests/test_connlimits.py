"""Connection limits (issue 16, item 1): idle and slow-header floods, the connection cap,
and a lowered descriptor limit, against a real exporter process and real servers."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_core import HungServer, free_port
from fixtures_pg import PgCluster
from fixtures_redis import RedisServer
from fixtures_s3 import MotoServer

from devstack.exporter import exporter_argv
from exporter import config as config_mod
from exporter.connlimits import ServerLimits, throttle_accept_errors
from exporter.service import Exporter

NOFILE = 256


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


class Flood:
    """Idle sockets (connect, send nothing) and slow-header sockets (one byte every
    half second, never a complete request), from threads so the measuring scraper's
    timing is not mixed with the flood's."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.idle_opened = 0
        self.slow: list[tuple[socket.socket, float]] = []
        self.slow_lifetimes: list[float] = []
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def _connect(self) -> socket.socket | None:
        s = socket.socket()
        s.settimeout(2.0)
        try:
            s.connect(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return None
        return s

    def _idle(self, count: int) -> None:
        held: list[socket.socket] = []
        for _ in range(count):
            if self.stop.is_set():
                break
            s = self._connect()
            if s is not None:
                held.append(s)
                self.idle_opened += 1
        self.stop.wait()
        for s in held:
            s.close()

    def _slow(self, count: int) -> None:
        for _ in range(count):
            s = self._connect()
            if s is not None:
                s.setblocking(False)
                self.slow.append((s, time.monotonic()))
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        sent = 0
        alive = list(self.slow)
        while alive and not self.stop.is_set():
            for s, opened in list(alive):
                try:
                    if s.recv(1024) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    alive.remove((s, opened))
                    with self.lock:
                        self.slow_lifetimes.append(time.monotonic() - opened)
                    continue
                try:
                    s.send(request[sent % len(request) : sent % len(request) + 1])
                except OSError:
                    pass
            sent += 1
            self.stop.wait(0.5)
        for s, _ in self.slow:
            s.close()

    def start(self, idle: int, slow: int) -> None:
        for target, count in ((self._idle, idle), (self._slow, slow)):
            thread = threading.Thread(target=target, args=(count,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def _scrape(conn: http.client.HTTPConnection) -> tuple[int, float, bytes]:
    start = time.monotonic()
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, time.monotonic() - start, body


@pytest.fixture
def flooded_exporter(
    tmp_path: Path, pg_primary: PgCluster, redis_server: RedisServer, s3_server: MotoServer
) -> Iterator[tuple[int, Path]]:
    cfg = tmp_path / "sparki.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "poll_interval": "2s",
                "poll_timeout": "1500ms",
                "postgres": [pg_primary.target("pg")],
                "redis": [redis_server.target("cache")],
                "s3": [s3_server.target("artifacts")],
            }
        )
    )
    port = free_port()
    log = tmp_path / "exporter.log"
    proc = subprocess.Popen(
        exporter_argv(
            cfg,
            port,
            "--web.read-header-timeout",
            "2s",
            "--web.idle-timeout",
            "3s",
            "--web.max-connections",
            "100000",
        ),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        preexec_fn=_low_nofile,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    c.close()
                    break
                c.close()
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _up(body: bytes) -> dict[str, float]:
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("sparki_up{"):
            labels, _, value = line.rpartition(" ")
            target = labels.split('target="', 1)[1].split('"', 1)[0]
            out[target] = float(value)
    return out


FLOOD = """
import json, os, sys, time
os.nice(10)  # the attacker must not win by taking the test's own CPU on a small box
sys.path.insert(0, {tests!r})
from test_connlimits import Flood
flood = Flood({port})
flood.start(idle={idle}, slow={slow})
time.sleep({seconds})
flood.close()
print(json.dumps({{"idle": flood.idle_opened, "slow": flood.slow_lifetimes}}))
"""


def test_idle_and_slow_header_flood_under_low_descriptor_limit(
    flooded_exporter: tuple[int, Path],
) -> None:
    """2.5 times RLIMIT_NOFILE idle sockets plus 40 slow-header ones (from another
    process): a keep-alive scraper keeps p99 under 100 ms, new clients still connect,
    every target stays up, slow headers are cut at the header timeout, and the log
    stays short."""
    port, log = flooded_exporter
    scraper = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    assert _scrape(scraper)[0] == 200
    flood = subprocess.Popen(
        [
            sys.executable,
            "-c",
            FLOOD.format(
                tests=str(Path(__file__).parent),
                port=port,
                idle=int(NOFILE * 2.5),
                slow=40,
                seconds=12,
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    latencies: list[float] = []
    statuses: list[int] = []
    ups: list[dict[str, float]] = []
    fresh: list[tuple[int, float]] = []
    stop = threading.Event()

    def newcomers() -> None:
        """A client connecting anew every second during the flood gets in."""
        while not stop.wait(1.0):
            start = time.monotonic()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                fresh.append((_scrape(c)[0], time.monotonic() - start))
            except OSError as exc:
                fresh.append((-1, time.monotonic() - start))
                print("newcomer failed:", exc)
            finally:
                c.close()

    thread = threading.Thread(target=newcomers, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)  # the flood is connecting
        end = time.monotonic() + 10
        while time.monotonic() < end:
            status, took, body = _scrape(scraper)
            statuses.append(status)
            latencies.append(took)
            ups.append(_up(body))
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(15)
        out, _ = flood.communicate(timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["idle"] >= NOFILE, "the flood did not exceed the descriptor limit"
    assert set(statuses) == {200}
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert p99 < 0.1, f"p99 {p99 * 1000:.0f} ms over {len(latencies)} scrapes"
    # Newcomers are served; the first ones may wait for a SYN retry while the
    # kernel's accept queue is full of the flood's connections.
    assert fresh and all(status == 200 for status, _ in fresh), fresh
    assert all(took < 5.0 for _, took in fresh[2:]), fresh
    # The pollers kept their descriptors: no target went down during the flood.
    assert ups[-1] == {"pg": 1.0, "cache": 1.0, "artifacts": 1.0}, ups[-1]
    assert all(all(v == 1.0 for v in u.values()) for u in ups)
    # Slow-header connections were closed at the 2 s header timeout, not held.
    slow = result["slow"]
    assert len(slow) >= 30, slow
    assert max(slow) < 6.0, slow
    text = log.read_text()
    assert "connection limit lowered to fit the file descriptor limit" in text
    assert "out of system resource" not in text
    assert len(text.splitlines()) < 40, text[-3000:]


async def test_busy_connections_refuse_with_503(hung_server: HungServer) -> None:
    """At the cap with every connection serving a request, a new one gets 503 and
    Retry-After at once; when a slot frees, it is served again."""
    cfg = config_mod.validate(
        {
            "poll_interval": "30s",
            "poll_timeout": "3s",
            "redis": [{"name": "hung", "url": f"redis://127.0.0.1:{hung_server.port}"}],
        },
        {},
    )
    exporter = Exporter(cfg, limits=ServerLimits(max_connections=2))
    await exporter.start("127.0.0.1", 0)
    try:
        assert exporter.guard is not None and exporter.guard.cap == 2

        async def get(path: str) -> tuple[bytes, float]:
            start = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.read(4096), 10)
            writer.close()
            return head, time.monotonic() - start

        # Two probes of a target that never answers keep both connections busy.
        busy = [asyncio.create_task(get("/probe?target=hung")) for _ in range(2)]
        deadline = time.monotonic() + 5
        while len(exporter.guard.open) < 2 or any(c.idle() for c in exporter.guard.open):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        head, took = await get("/metrics")
        assert head.startswith(b"HTTP/1.1 503 "), head
        assert b"Retry-After: 1" in head and b"too many connections" in head
        assert took < 1.0
        for head, _ in await asyncio.gather(*busy):
            assert head.startswith(b"HTTP/1.1 200 ")
        head, _ = await get("/metrics")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert exporter.guard.refused == 1
    finally:
        await exporter.stop()


def test_descriptor_exhaustion_logs_once_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When accept() fails with EMFILE, one warning per interval (not one per attempt),
    and connections are accepted again once descriptors are free."""
    caplog.set_level(logging.DEBUG)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spawned: list[subprocess.Popen[bytes]] = []

    async def main() -> int:
        loop = asyncio.get_running_loop()
        throttle_accept_errors(loop, interval=10.0)
        accepted = 0

        class Count(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                nonlocal accepted
                accepted += 1

        server = await loop.create_server(Count, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = (
            "import socket,sys,time\n"
            "sys.stdin.readline()\n"
            f"s=[socket.create_connection(('127.0.0.1',{port})) for _ in range(40)]\n"
            "time.sleep(30)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", client], stdin=subprocess.PIPE)
        spawned.append(proc)
        assert proc.stdin is not None
        held: list[int] = []
        try:
            # Use up every descriptor, then let 40 clients (another process) connect:
            # the accepts fail with EMFILE for about 2.5 s.
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard)
            )
            while True:
                try:
                    held.append(os.open("/dev/null", os.O_RDONLY))
                except OSError:
                    break
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            await asyncio.sleep(2.5)
        finally:
            for fd in held:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        deadline = loop.time() + 10
        while accepted < 40 and loop.time() < deadline:
            await asyncio.sleep(0.1)
        server.close()
        return accepted

    try:
        accepted = asyncio.run(main())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for proc in spawned:
            proc.kill()
            proc.wait()
    warnings = [r for r in caplog.records if "cannot accept connections" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]
    assert accepted == 40


async def test_idle_keepalive_and_silent_connections_are_closed(hung_server: HungServer) -> None:
    """A kept-alive connection idle past --web.idle-timeout, and one that never sends a
    request, are closed by the server at their timeouts (aiohttp's default is an hour)."""
    cfg = config_mod.validate(
        {"redis": [{"name": "r", "url": f"redis://127.0.0.1:{hung_server.port}"}]}, {}
    )
    limits = ServerLimits(read_header_timeout=1.0, idle_timeout=1.5)
    exporter = Exporter(cfg, limits=limits)
    await exporter.start("127.0.0.1", 0)
    try:

        async def closed_after(request: bytes) -> float:
            reader, writer = await asyncio.open_connection("127.0.0.1", exporter.port)
            start = time.monotonic()
            writer.write(request)
            while await asyncio.wait_for(reader.read(65536), 10):  # until the server closes
                pass
            writer.close()
            return time.monotonic() - start

        kept_alive = await closed_after(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        silent = await closed_after(b"")
        assert 1.0 <= kept_alive < 4.0, kept_alive
        assert 0.8 <= silent < 3.5, silent
        assert exporter.guard is not None and exporter.guard.timed_out >= 1
    finally:
        await exporter.stop()
