"""The ``slowlog`` collector: the slow log's length and how many entries were ever logged.

``SLOWLOG LEN`` is the entries kept now (at most ``slowlog-max-len``, emptied by
``SLOWLOG RESET``). Growth is read from the newest entry's id (``SLOWLOG GET 1``):
ids count up from 0 for every entry logged since the server started and survive
``SLOWLOG RESET``, so id + 1 is a counter of slow commands, which ``rate()`` turns
into slow commands per second. When the log is empty after a reset the last id seen
is kept; a restart (new ``run_id``) starts from the server's count again.

Needs ``+slowlog|len +slowlog|get`` (or ``+slowlog``) in the monitoring user's ACL;
without them this collector alone fails (``sparki_collector_success`` 0). The two
calls are the exporter's own and land in commandstats and LATENCY HISTOGRAM under
``slowlog|len`` / ``slowlog|get``; with ``slowlog-log-slower-than 0`` they are logged
too, as every other command is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...adapter import PollError, Reason
from ...metrics import Metric
from .config import RedisConfig
from .context import NodeContext
from .series import NodeFamilies, role_of


@dataclass(frozen=True, slots=True)
class SlowlogPart:
    role: str
    length: int
    logged: int  # entries logged since the server started (0 when none was ever seen)


def _number(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str | bytes):
        raise PollError(Reason.PROTOCOL, f"SLOWLOG: {what} is not a number")
    try:
        number = int(value)
    except ValueError:
        raise PollError(Reason.PROTOCOL, f"SLOWLOG: {what} is not a number") from None
    if number < 0:
        raise PollError(Reason.PROTOCOL, f"SLOWLOG: {what} is negative")
    return number


class Collector:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.logged: dict[str, tuple[str | None, int]] = {}  # node -> (run_id, id + 1)

    async def collect(self, ctx: NodeContext) -> SlowlogPart:
        length = _number(await ctx.call("SLOWLOG", "LEN"), "length")
        newest = await ctx.call("SLOWLOG", "GET", "1")
        run_id = ctx.info.get("run_id")
        seen_run, seen = self.logged.get(ctx.node, (run_id, 0))
        if seen_run != run_id:  # restarted: ids start again from 0
            seen = 0
        if isinstance(newest, list | tuple) and newest:
            entry = newest[0]
            if not isinstance(entry, list | tuple) or not entry:
                raise PollError(Reason.PROTOCOL, "SLOWLOG GET: unexpected entry shape")
            seen = max(seen, _number(entry[0], "entry id") + 1)
        self.logged[ctx.node] = (run_id, seen)
        return SlowlogPart(role=role_of(ctx.role), length=length, logged=seen)


def families(parts: Sequence[tuple[str, Any]], target: str) -> list[Metric]:
    f = NodeFamilies(parts, target)
    return [
        f.gauge(
            "sparki_redis_slowlog_length",
            "Entries in the slow log now (SLOWLOG LEN)",
            lambda p: p.length,
        ),
        f.counter(
            "sparki_redis_slowlog_entries",
            "Commands logged as slow since the server started (newest SLOWLOG id + 1); "
            "rate() is slow commands per second",
            lambda p: p.logged,
        ),
    ]
