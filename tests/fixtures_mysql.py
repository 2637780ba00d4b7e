"""Throwaway MariaDB servers for the MySQL adapter's tests (see devstack/mysql.py).

API other tests rely on:

* ``mysql_server`` (session): performance_schema on, users ``sparki`` (monitoring
  grants, ``.target(name)``) and ``sparki_bare`` (none, ``.bare_target(name)``).
  Tests must not stop or reconfigure it.
* ``mysql_nopfs`` (session): the same with performance_schema off (MariaDB's default).
* ``mysql_private`` (function): a server a test may restart, stop or reconfigure.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.mysql import MysqlServer

__all__ = ["MysqlServer"]


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MysqlServer]:
    server = MysqlServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def mysql_nopfs() -> Iterator[MysqlServer]:
    server = MysqlServer(performance_schema=False).start()
    yield server
    server.destroy()


@pytest.fixture
def mysql_private() -> Iterator[MysqlServer]:
    server = MysqlServer().start()
    yield server
    server.destroy()
