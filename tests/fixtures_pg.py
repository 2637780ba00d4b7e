"""PostgreSQL fixtures: throwaway clusters from devstack.postgres (initdb, free port)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from devstack.postgres import PgCluster, make_primary

__all__ = ["PgCluster", "make_primary"]


@pytest.fixture(scope="session")
def pg_primary() -> Iterator[PgCluster]:
    """A shared primary. Tests must not stop it; use ``pg_cluster`` for that."""
    cluster = make_primary()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def pg_standby(pg_primary: PgCluster) -> Iterator[PgCluster]:
    standby = PgCluster().init_standby(pg_primary).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if pg_primary.sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")[0][
            0
        ]:
            break
        time.sleep(0.2)
    yield standby
    standby.destroy()


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A private primary a test may stop, restart or reset."""
    cluster = make_primary()
    yield cluster
    cluster.destroy()
