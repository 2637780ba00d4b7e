"""What a collector gets for one poll: the connection and what every collector shares.

``SHOW GLOBAL STATUS`` and a few server variables are read once per poll by the
target (connections, global_status, innodb and galera all read from them), so
switching collectors on costs no extra round trip for those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Context:
    conn: Any  # asyncmy.Connection: kept untyped so collectors import no driver
    status: Mapping[str, str]  # SHOW GLOBAL STATUS, names lower-cased
    max_connections: int
    performance_schema: bool
    mariadb: bool
    version: str

    def number(self, name: str, default: float = 0.0) -> float:
        """A status variable as a number (``default`` when absent or not numeric)."""
        try:
            return float(self.status[name])
        except (KeyError, ValueError):
            return default

    def has(self, name: str) -> bool:
        return name in self.status


async def fetch(conn: Any, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Every row of one statement, as tuples."""
    async with conn.cursor() as cur:
        await cur.execute(sql, params)
        return [tuple(row) for row in await cur.fetchall()]


async def fetch_dicts(conn: Any, sql: str) -> list[dict[str, Any]]:
    """Every row of one statement as {column: value} (SHOW ... STATUS, whose columns vary)."""
    async with conn.cursor() as cur:
        await cur.execute(sql)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=False)) for row in await cur.fetchall()]
