"""Throwaway Redis servers: real redis-server processes on free ports in temp dirs.

Tests never touch a system Redis (the one on 6379 included): every server here is
started from its own redis.conf in a temporary directory, so tests can restart, kill,
reconfigure and flush it freely.

API other tests rely on:

* ``redis_server`` (session): a plain server with ``.url``, ``.port`` and
  ``.target(name) -> dict`` (an exporter target config). Tests must not stop it.
* ``redis_factory`` (function): ``redis_factory(**options)`` starts a private server
  (see :class:`RedisServer` for options); all are destroyed after the test.
* ``redis_private``: one private server a test may restart, kill or reconfigure.
* ``redis_acl``: a server whose monitoring user lacks LATENCY (``.target`` uses it).
* ``redis_tls``: a TLS-only server with a trustme CA and client certificate.
* ``redis_cluster``: a three-primary Redis Cluster; ``add_replica()`` and ``remove()``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from fixtures_core import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _require_redis() -> None:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server not installed (apt-get install redis-server)")


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
    mode with its own bus port), ``unix_socket`` (also listen on a socket), ``port``.
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
    ) -> None:
        _require_redis()
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
            [REDIS_SERVER, str(self.base / "redis.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_tail()}")
            try:
                with self.client(socket_timeout=1) as c:
                    c.ping()
                return self
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer within {timeout}s: {self.log_tail()}")

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


class RedisCluster:
    """A Redis Cluster of three primaries (no replicas), made with redis-cli --cluster."""

    def __init__(self) -> None:
        self.nodes = [RedisServer(cluster=True).start() for _ in range(3)]
        self.extra: list[RedisServer] = []
        try:
            self._cli(
                "--cluster",
                "create",
                *(n.address for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            )
            self.wait_until(lambda: self._state_ok(self.nodes, len(self.nodes)))
        except BaseException:
            self.destroy()
            raise

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            [REDIS_CLI, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args[:2])} failed: {done.stdout[-2000:]}")
        return done.stdout

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                if predicate():
                    return
            time.sleep(0.1)
        raise AssertionError(f"cluster not ready within {timeout}s")

    @staticmethod
    def _state_ok(nodes: Sequence[RedisServer], known: int) -> bool:
        for n in nodes:
            with n.client() as c:
                info = c.execute_command("CLUSTER", "INFO")
                text = info if isinstance(info, str) else str(info)
                if "cluster_state:ok" not in text or f"cluster_known_nodes:{known}" not in text:
                    return False
        return True

    def target(self, name: str, **extra: Any) -> dict[str, Any]:
        return self.nodes[0].target(name, **extra)

    def add_replica(self, of: int = 0) -> RedisServer:
        """Start a fourth node and join it as a replica of ``nodes[of]``."""
        node = RedisServer(cluster=True).start()
        self.extra.append(node)
        primary = self.nodes[of]
        self._cli(
            "--cluster",
            "add-node",
            node.address,
            primary.address,
            "--cluster-slave",
            "--cluster-master-id",
            primary.node_id(),
        )
        everyone = [*self.nodes, *self.extra]
        self.wait_until(lambda: self._state_ok(everyone, len(everyone)))
        return node

    def remove(self, node: RedisServer) -> None:
        """Make the cluster forget a node (redis-cli --cluster del-node), then stop it."""
        self._cli("--cluster", "del-node", self.nodes[0].address, node.node_id())
        node.destroy()
        if node in self.extra:
            self.extra.remove(node)
        alive = [n for n in (*self.nodes, *self.extra) if n.proc is not None]
        self.wait_until(lambda: self._known(alive, len(alive)))

    @staticmethod
    def _known(nodes: Sequence[RedisServer], known: int) -> bool:
        for n in nodes:
            with n.client() as c:
                text = str(c.execute_command("CLUSTER", "INFO"))
                if f"cluster_known_nodes:{known}" not in text:
                    return False
        return True

    def destroy(self) -> None:
        for node in [*self.nodes, *self.extra]:
            node.destroy()


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A shared plain server. Tests must not stop or reconfigure it."""
    server = RedisServer().start()
    yield server
    server.destroy()


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """``redis_factory(**options)`` starts a private server; all are destroyed afterwards."""
    started: list[RedisServer] = []

    def make(**options: Any) -> RedisServer:
        server = RedisServer(**options)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.destroy()


@pytest.fixture
def redis_private(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A private server a test may restart, kill, reset or fill."""
    return redis_factory()


class AclServer:
    """A server whose ``monitor`` user may run what the exporter needs except LATENCY."""

    USER = "sparki-mon"
    PASSWORD = "mon-Pa55-word"
    RULE = "+ping +info +config|get +client|setname +cluster|nodes +cluster|info"

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.url = server.url
        self.port = server.port

    def target(self, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "url": self.server.url,
            "username": self.USER,
            "password": self.PASSWORD,
            **extra,
        }


@pytest.fixture
def redis_acl(redis_factory: Callable[..., RedisServer]) -> AclServer:
    """A server with an ACL user lacking LATENCY (and every key and write command)."""
    user = (
        f"{AclServer.USER} on >{AclServer.PASSWORD} resetkeys resetchannels -@all {AclServer.RULE}"
    )
    return AclServer(redis_factory(users=[user]))


@pytest.fixture
def redis_tls(redis_factory: Callable[..., RedisServer], tmp_path: Path) -> Iterator[RedisServer]:
    """A TLS-only server (client certificates required); ``.tls`` holds the files."""
    yield redis_factory(tls=TlsFiles(tmp_path / "tls"))


@pytest.fixture
def redis_cluster() -> Iterator[RedisCluster]:
    """A three-primary Redis Cluster; ``.target(name)`` points at its first node."""
    _require_redis()
    cluster = RedisCluster()
    yield cluster
    cluster.destroy()
