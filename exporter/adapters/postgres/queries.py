"""Running one query on the target's connection: the two shapes every collector uses."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from ...adapter import PollError, Reason


async def one(conn: AsyncConnection[Any], sql: str, params: Any = None) -> tuple[Any, ...]:
    """The first row; a query that returns none is a protocol surprise, not an empty part."""
    cur = await conn.execute(sql.encode(), params)
    row = await cur.fetchone()
    if row is None:
        raise PollError(Reason.PROTOCOL, f"no row returned by {sql[:40]}...")
    return tuple(row)


# Asked only of servers before 14, which do not report in_hot_standby.
RECOVERY_SQL = "SELECT pg_is_in_recovery()"


async def in_recovery(conn: AsyncConnection[Any]) -> bool:
    """Whether the server is a standby, without a round trip where possible.

    PostgreSQL 14+ reports ``in_hot_standby`` to every session (and reports it again
    when a promotion changes it), so libpq already knows; older servers are asked.
    """
    reported = conn.info.parameter_status("in_hot_standby")
    if reported is not None:
        return reported == "on"
    return bool((await one(conn, RECOVERY_SQL))[0])


async def rows(
    conn: AsyncConnection[Any], sql: str, params: Any = None, binary: bool = False
) -> list[tuple[Any, ...]]:
    """Every row, as tuples. ``binary`` asks for binary results: for thousands of rows
    of numbers (pg_stat_statements) it saves the client a quarter of the decoding."""
    cur = conn.cursor(binary=True) if binary else conn.cursor()
    await cur.execute(sql.encode(), params)
    return [tuple(r) for r in await cur.fetchall()]
