"""Collector ``innodb``: buffer pool efficiency, dirty pages, row locks and deadlocks.

The hit ratio is left to PromQL (recording rule), from two counters: logical read
requests and the reads that had to go to disk. ``Innodb_deadlocks`` is MariaDB's;
MySQL 8 counts deadlocks in information_schema.INNODB_METRICS (``lock_deadlocks``,
enabled by default, needs PROCESS), read only there.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import TargetConfig
from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .context import Context, fetch

DEADLOCKS_SQL = (
    "SELECT `COUNT` AS sparki_exporter FROM information_schema.INNODB_METRICS "
    "WHERE NAME = 'lock_deadlocks'"
)


@dataclass(frozen=True, slots=True)
class Part:
    read_requests: int
    reads: int
    pages_total: int
    pages_dirty: int
    pages_free: int
    row_lock_waits: int
    row_lock_seconds: float
    row_lock_current_waits: int
    deadlocks: int | None


class Collector:
    def __init__(self, config: TargetConfig) -> None:
        self.config = config

    async def collect(self, ctx: Context) -> Part:
        n = ctx.number
        if ctx.has("innodb_deadlocks"):
            deadlocks: int | None = int(n("innodb_deadlocks"))
        else:
            rows = await fetch(ctx.conn, DEADLOCKS_SQL)
            deadlocks = int(rows[0][0]) if rows and rows[0][0] is not None else None
        return Part(
            read_requests=int(n("innodb_buffer_pool_read_requests")),
            reads=int(n("innodb_buffer_pool_reads")),
            pages_total=int(n("innodb_buffer_pool_pages_total")),
            pages_dirty=int(n("innodb_buffer_pool_pages_dirty")),
            pages_free=int(n("innodb_buffer_pool_pages_free")),
            row_lock_waits=int(n("innodb_row_lock_waits")),
            row_lock_seconds=n("innodb_row_lock_time") / 1000.0,  # milliseconds
            row_lock_current_waits=int(n("innodb_row_lock_current_waits")),
            deadlocks=deadlocks,
        )


def families(target: str, part: Part) -> list[Metric]:
    t = [target]
    out: list[Metric] = []
    counters: list[tuple[str, str, float | None]] = [
        (
            "innodb_buffer_pool_read_requests",
            "Logical page reads from the buffer pool",
            part.read_requests,
        ),
        (
            "innodb_buffer_pool_reads",
            "Page reads the buffer pool missed (went to disk)",
            part.reads,
        ),
        ("innodb_row_lock_waits", "Times a statement waited for a row lock", part.row_lock_waits),
        ("innodb_row_lock_wait_seconds", "Time spent waiting for row locks", part.row_lock_seconds),
        ("innodb_deadlocks", "Transactions rolled back as deadlock victims", part.deadlocks),
    ]
    for name, doc, value in counters:
        c = CounterMetricFamily(f"sparki_mysql_{name}", doc, labels=["target"])
        if value is not None:
            c.add_metric(t, value)
        out.append(c)
    pages = GaugeMetricFamily(
        "sparki_mysql_innodb_buffer_pool_pages",
        "Buffer pool pages by state: total, dirty (modified, not yet flushed), free",
        labels=["target", "state"],
    )
    for state, value in (
        ("total", part.pages_total),
        ("dirty", part.pages_dirty),
        ("free", part.pages_free),
    ):
        pages.add_metric([target, state], value)
    out.append(pages)
    waiting = GaugeMetricFamily(
        "sparki_mysql_innodb_row_lock_current_waits",
        "Statements waiting for a row lock now",
        labels=["target"],
    )
    waiting.add_metric(t, part.row_lock_current_waits)
    out.append(waiting)
    return out
