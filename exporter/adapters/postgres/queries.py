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


async def rows(conn: AsyncConnection[Any], sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Every row, as tuples."""
    cur = await conn.execute(sql.encode(), params)
    return [tuple(r) for r in await cur.fetchall()]
