"""Throwaway NATS servers: Debian's nats-server with JetStream on free ports in temp dirs.

Tests never touch the machine's own NATS on 4222: each server here has its own store
directory, client port and monitoring port, so tests can fill, restart and stop it.

* ``nats_server`` (session): a plain JetStream server; ``.target(name)`` gives a config.
* ``nats_token`` (session): one that requires a token (``.token``).
* ``nats_factory`` (function): ``nats_factory(**options)`` starts a private server;
  ``tls=TlsFiles(...)`` makes it require TLS on the client port and serve monitoring
  over https only, ``verify_clients=True`` also requires a client certificate.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_core import free_port, wait_until

from devstack.redis import TlsFiles

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsServer:
    """One nats-server -js process; ``stop()`` and ``start()`` keep its ports and data."""

    def __init__(
        self,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        config: str = "",
        tls: TlsFiles | None = None,
        verify_clients: bool = False,
    ) -> None:
        """``config``: extra nats-server configuration text (limits such as max_pending)."""
        self.dir = Path(tempfile.mkdtemp(prefix="sparki-nats-"))
        self.config = config
        self.tls, self.verify_clients = tls, verify_clients
        self.port = free_port()
        self.monitor_port = free_port()
        self.token, self.user, self.password = token, user, password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.monitor_port}"

    def start(self) -> NatsServer:
        args = [NATS_SERVER, "-js", "-sd", str(self.dir), "-a", "127.0.0.1"]
        args += ["-p", str(self.port), "-ms" if self.tls else "-m", str(self.monitor_port)]
        if self.tls:
            args += ["--tls", "--tlscert", str(self.tls.server_cert)]
            args += ["--tlskey", str(self.tls.server_key)]
            if self.verify_clients:
                args += ["--tlsverify", "--tlscacert", str(self.tls.ca_file)]
        if self.config:
            conf = self.dir / "server.conf"
            conf.write_text(self.config)
            args += ["-c", str(conf)]
        if self.token:
            args += ["--auth", self.token]
        if self.user:
            args += ["--user", self.user, "--pass", str(self.password)]
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        wait_until(self._ready, 15, retry_on=(OSError,), what="nats-server ready")
        return self

    def _ready(self) -> bool:
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.tls.ca_file))
            if self.verify_clients:
                context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        with urllib.request.urlopen(self.monitor_url + "/healthz", timeout=1, context=context) as r:
            return bool(r.status == 200)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def target(self, name: str) -> dict[str, Any]:
        t: dict[str, Any] = {"name": name, "url": self.url, "monitor_url": self.monitor_url}
        if self.token:
            t["token"] = self.token
        if self.user:
            t["user"], t["password"] = self.user, self.password
        return t


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def nats_token() -> Iterator[NatsServer]:
    server = NatsServer(token="sparki-nats-token-7c1e").start()
    yield server
    server.destroy()


@pytest.fixture
def nats_factory() -> Iterator[Callable[..., NatsServer]]:
    made: list[NatsServer] = []

    def make(**options: Any) -> NatsServer:
        server = NatsServer(**options).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.destroy()
