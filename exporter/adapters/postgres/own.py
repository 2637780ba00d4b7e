"""The exporter's own statements: learned so pg_stat_statements leaves exactly them out.

``EXPLAIN (VERBOSE)`` prints the query identifier PostgreSQL (14+, with
``compute_query_id`` on or ``auto`` and pg_stat_statements loaded) will record for a
statement, without running it. The target learns the identifiers of every statement it
and its enabled collectors run (each collector module lists its SQL in ``OWN_SQL``, or
returns it from ``own_sql(config, version)`` when it depends on the version), keyed by
the session's role and database: an application sharing the role keeps all of its
statements, and one running the very same SQL under another role keeps it too. The
EXPLAINs themselves are recorded by pg_stat_statements as utility statements: found by
their text right after, once per connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection

from .queries import one, rows

IDENTITY_SQL = (
    "SELECT session_user::regrole::oid::int8, "
    "(SELECT oid FROM pg_database WHERE datname = current_database())::int8, "
    "current_setting('server_version_num')::int"
)
EXPLAIN_PREFIX = "EXPLAIN (VERBOSE, FORMAT JSON) "
OWN_EXPLAINS_SQL = (
    "SELECT queryid FROM pg_stat_statements(true) "
    "WHERE userid::int8 = %s::int8 AND dbid::int8 = %s::int8 AND starts_with(query, %s)"
)
OWN_SQL: tuple[tuple[str, Any], ...] = ((IDENTITY_SQL, None), (OWN_EXPLAINS_SQL, (0, 0, "")))

SqlList = Callable[[int], list[tuple[str, Any]]]


class OwnStatements:
    """Per target: the session's (role, database) and the queryids of the SQL it runs."""

    def __init__(self, sql: SqlList) -> None:
        self.sql = sql  # version -> [(statement, example parameters)]
        self.user: int | None = None
        self.db: int | None = None
        self.queryids: frozenset[int] = frozenset()
        self.recognizable = False  # EXPLAIN shows query identifiers
        self.retry = True  # some SQL could not be explained yet (no extension)

    def is_own(self, userid: int, dbid: int, queryid: int) -> bool:
        return userid == self.user and dbid == self.db and queryid in self.queryids

    async def learn(self, conn: AsyncConnection[Any]) -> None:
        """EXPLAIN every statement; a statement that cannot be explained yet (the
        extension is not created) leaves ``retry`` set, so it is learned later."""
        user, db, version = await one(conn, IDENTITY_SQL)
        self.user, self.db = int(user), int(db)
        ids: set[int] = set()
        recognizable, retry = True, False
        for sql, params in self.sql(int(version)):
            try:
                cur = await conn.execute((EXPLAIN_PREFIX + sql).encode(), params)
                row = await cur.fetchone()
            except psycopg.errors.QueryCanceled:
                raise
            except psycopg.DatabaseError:
                retry = True  # pg_stat_statements not created yet: learn it later
                continue
            plan = row[0] if row else None
            queryid = plan[0].get("Query Identifier") if isinstance(plan, list) and plan else None
            if queryid is None:
                recognizable = False  # compute_query_id off, or PostgreSQL before 14
            else:
                ids.add(int(queryid))
        if recognizable and not retry:
            try:
                found = await rows(conn, OWN_EXPLAINS_SQL, (user, db, EXPLAIN_PREFIX))
            except psycopg.errors.QueryCanceled:
                raise
            except psycopg.DatabaseError:
                found = []
            ids |= {int(r[0]) for r in found if r[0] is not None}
        self.queryids = frozenset(ids)
        self.recognizable = recognizable and bool(ids)
        self.retry = retry
