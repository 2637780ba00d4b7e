"""The cluster's active alarms: NOSPACE (over quota: writes refused) and CORRUPT.

etcd raises an alarm cluster-wide and keeps it until an operator disarms it, so an
alarm is never transient: any active one is an emergency for whatever stores its
state there.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...metrics import GaugeMetricFamily, Metric
from .context import Context

ALARMS = ("NOSPACE", "CORRUPT")


@dataclass(frozen=True, slots=True)
class AlarmsPart:
    active: frozenset[str]


async def collect(ctx: Context) -> AlarmsPart:
    # action GET (the enum's default, 0) lists every member's alarms.
    reply = await ctx.call_any("/v3/maintenance/alarm", {"action": "GET"})
    active = set()
    for alarm in reply.get("alarms") or []:
        kind = str(alarm.get("alarm", ""))
        if kind in ALARMS:
            active.add(kind)
    return AlarmsPart(frozenset(active))


def families(target: str, part: AlarmsPart) -> list[Metric]:
    family = GaugeMetricFamily(
        "sparki_etcd_alarm",
        "1 while the alarm is active on any member (NOSPACE: writes refused; CORRUPT)",
        labels=["target", "alarm"],
    )
    for kind in ALARMS:
        family.add_metric([target, kind.lower()], 1.0 if kind in part.active else 0.0)
    return [family]
