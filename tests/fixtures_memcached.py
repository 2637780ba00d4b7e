"""Throwaway memcached servers (devstack/memcached.py): Debian's memcached 1.6.

Tests never touch a system memcached: every server here is a private process on
127.0.0.1 and a free port, with its own options, so tests can fill, restart and kill
it freely.

API other tests rely on:

* ``memcached_server`` (session): a plain node with ``.port`` and
  ``.target(name) -> dict`` (an exporter target config). Tests must not stop it.
* ``memcached_nodes`` (session): three plain nodes, for multi-node targets.
* ``memcached_auth`` (session): a node with ASCII authentication (-Y); ``.target``
  carries the right username and password.
* ``memcached_factory`` (function): ``memcached_factory(**options)`` starts a private
  node (see :class:`MemcachedServer`); all are stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.memcached import MEMCACHED, PASSWORD, USERNAME, MemcachedServer

__all__ = ["MEMCACHED", "PASSWORD", "USERNAME", "MemcachedServer"]


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    server = MemcachedServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def memcached_nodes() -> Iterator[list[MemcachedServer]]:
    nodes: list[MemcachedServer] = []
    try:
        for _ in range(3):
            nodes.append(MemcachedServer().start())
        yield nodes
    finally:
        for node in nodes:
            node.destroy()


@pytest.fixture(scope="session")
def memcached_auth() -> Iterator[MemcachedServer]:
    server = MemcachedServer(auth=True).start()
    yield server
    server.destroy()


@pytest.fixture
def memcached_factory() -> Iterator[Callable[..., MemcachedServer]]:
    started: list[MemcachedServer] = []

    def make(**options: Any) -> MemcachedServer:
        server = MemcachedServer(**options)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.destroy()
