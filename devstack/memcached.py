"""Throwaway memcached servers: Debian's ``memcached`` (1.6) on free ports.

Shared by the test fixtures (tests/fixtures_memcached.py) and the demo. Every server is
a private process on 127.0.0.1 and a free port, with its own options, so it can be
filled, restarted and killed freely.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .postgres import free_port

MEMCACHED = shutil.which("memcached") or "/usr/bin/memcached"
USERNAME = "sparki"
PASSWORD = "mc-test-Pw-7d1e"


class MemcachedServer:
    """One memcached process; ``restart()`` keeps its port (a server restart)."""

    def __init__(
        self,
        memory_mb: int = 16,
        base: Path | None = None,
        max_connections: int = 64,
        auth: bool = False,
        no_evictions: bool = False,
    ) -> None:
        self.port = free_port()
        self.memory_mb = memory_mb
        self.max_connections = max_connections
        self.auth = auth
        self.no_evictions = no_evictions
        # Readable by the user memcached drops to (nobody, when the tests run as root).
        self.dir = Path(tempfile.mkdtemp(prefix="sparki-mc-", dir=base))
        self.dir.chmod(0o755)
        self.auth_file = self.dir / "auth"
        self.auth_file.write_text(f"{USERNAME}:{PASSWORD}\n")
        self.auth_file.chmod(0o644)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-t", "2"]
        args += ["-m", str(self.memory_mb), "-c", str(self.max_connections)]
        if self.auth:
            args += ["-Y", str(self.auth_file)]
        if self.no_evictions:
            args.append("-M")
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        return args

    def start(self) -> MemcachedServer:
        log = (self.dir / "memcached.log").open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command(b"version\r\n").startswith(b"VERSION"):
                    return self
            except OSError:
                pass
            if time.monotonic() >= deadline or self.proc.poll() is not None:
                self.stop()  # never leave a half-started server behind
                raise RuntimeError(f"memcached on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def command(self, data: bytes, auth: bool = True, until: bytes = b"") -> bytes:
        """Send raw protocol bytes on a fresh connection; the reply up to ``until``
        (or the first line)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            reader = sock.makefile("rb")
            if auth and self.auth:
                token = f"{USERNAME} {PASSWORD}".encode()
                sock.sendall(b"set a 0 0 %d\r\n%s\r\n" % (len(token), token))
                assert reader.readline() == b"STORED\r\n"
            sock.sendall(data)
            out = b""
            while True:
                line = reader.readline()
                if not line:
                    return out
                out += line
                if not until or line == until:
                    return out

    def stats(self, group: str = "") -> dict[str, str]:
        cmd = f"stats {group}".strip().encode() + b"\r\n"
        text = self.command(cmd, until=b"END\r\n").decode()
        out = {}
        for line in text.splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
        return out

    def keys(self) -> list[str]:
        """Every key stored (lru_crawler metadump), URL-decoded as memcached prints them."""
        text = self.command(b"lru_crawler metadump all\r\n", until=b"END\r\n").decode()
        return [
            line.split(" ", 1)[0].removeprefix("key=")
            for line in text.splitlines()
            if line.startswith("key=")
        ]

    def set(self, key: str, value: bytes, ttl: int = 0) -> bytes:
        return self.command(b"set %s 0 %d %d\r\n%s\r\n" % (key.encode(), ttl, len(value), value))

    def fill(self, sizes: Iterable[int]) -> int:
        """Store values of each size until the server refuses one; items stored."""
        stored = 0
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            reader = sock.makefile("rb")
            for size in sizes:
                for i in itertools.count():
                    key = b"fill:%d:%d" % (size, i)
                    sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, size, b"x" * size))
                    if reader.readline() != b"STORED\r\n":
                        break
                    stored += 1
        return stored

    def get(self, key: str) -> bytes:
        return self.command(b"get %s\r\n" % key.encode(), until=b"END\r\n")

    def target(self, name: str, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "nodes": [self.address]}
        if self.auth:
            out.update(username=USERNAME, password=PASSWORD)
        return {**out, **extra}
