"""PostgreSQL fixtures: throwaway clusters from devstack.postgres (initdb, free port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fixtures_core import wait_until

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
    streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
    wait_until(lambda: pg_primary.sql(streaming)[0][0], 30, 0.2, what="standby streaming")
    yield standby
    standby.destroy()


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A private primary a test may stop, restart or reset."""
    cluster = make_primary()
    yield cluster
    cluster.destroy()
