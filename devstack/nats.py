"""A throwaway NATS server for the demo: Debian's nats-server with JetStream and
monitoring on free ports, its store in a directory of its own.

The tests keep their own fixture (tests/fixtures_nats.py: TLS, auth, limits).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from .postgres import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsServer:
    """One ``nats-server -js`` in ``base``; client port ``url``, monitoring ``monitor_url``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.monitor_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        args = [NATS_SERVER, "-js", "-sd", str(self.base / "store"), "-a", "127.0.0.1"]
        args += ["-p", str(self.port), "-m", str(self.monitor_port)]
        with open(self.base / "nats.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.monitor_url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"nats-server did not start; see {self.base / 'nats.log'}")
            time.sleep(0.1)

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)
