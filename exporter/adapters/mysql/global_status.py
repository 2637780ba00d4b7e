"""Collector ``global_status``: throughput and slow queries from SHOW GLOBAL STATUS.

``Queries`` counts every statement (stored programs' included), ``Questions`` only
those clients sent; ``Slow_queries`` those over long_query_time. Commands by kind are
a fixed set (bounded labels): the Com_* counters of the statements applications run.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import TargetConfig
from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .context import Context

COMMANDS = (
    "select",
    "insert",
    "update",
    "delete",
    "replace",
    "commit",
    "rollback",
    "call_procedure",
)


@dataclass(frozen=True, slots=True)
class Part:
    queries: int
    questions: int
    slow_queries: int
    commands: tuple[tuple[str, int], ...]
    uptime: int


class Collector:
    def __init__(self, config: TargetConfig) -> None:
        self.config = config

    async def collect(self, ctx: Context) -> Part:
        n = ctx.number
        return Part(
            queries=int(n("queries")),
            questions=int(n("questions")),
            slow_queries=int(n("slow_queries")),
            commands=tuple((c, int(n(f"com_{c}"))) for c in COMMANDS if ctx.has(f"com_{c}")),
            uptime=int(n("uptime")),
        )


def families(target: str, part: Part) -> list[Metric]:
    t = [target]
    out: list[Metric] = []
    for name, doc, value in (
        ("queries", "Statements executed, stored programs' included (Queries)", part.queries),
        ("questions", "Statements sent by clients (Questions)", part.questions),
        (
            "slow_queries",
            "Statements slower than long_query_time (Slow_queries)",
            part.slow_queries,
        ),
    ):
        c = CounterMetricFamily(f"sparki_mysql_{name}", doc, labels=["target"])
        c.add_metric(t, value)
        out.append(c)
    cmds = CounterMetricFamily(
        "sparki_mysql_commands", "Statements by kind (Com_*)", labels=["target", "command"]
    )
    for command, value in part.commands:
        cmds.add_metric([target, command], value)
    out.append(cmds)
    up = GaugeMetricFamily(
        "sparki_mysql_uptime_seconds", "Seconds since the server started", labels=["target"]
    )
    up.add_metric(t, part.uptime)
    out.append(up)
    return out
