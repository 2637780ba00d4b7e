"""Collector ``settings``: a few server settings, as gauges in base units.

The settings that explain what the other metrics show: how many connections may
exist, how much memory a query or the cache may use, when checkpoints and
anti-wraparound vacuums start. Read from ``pg_settings`` (every role may read these)
and converted with the view's own ``unit`` column (``8kB`` pages, ``kB``, ``ms``,
``min``...) to bytes and seconds; booleans become 0 or 1.

One family per setting, named ``sparki_postgres_setting_<name>`` with the unit suffix
(``_bytes``, ``_seconds``), rather than one family with a ``name`` label: the values
have different units, and a single family would mix bytes, seconds and counts under
one name, which the naming conventions (one unit per metric) forbid and which makes
``sum``/``max`` over it meaningless. The list is fixed, so the families are bounded.
autovacuum_max_workers is exported by the ``vacuum`` collector, next to the workers
running, as ``sparki_postgres_autovacuum_max_workers``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import GaugeMetricFamily, Metric
from .batch import QueryCollector, Rows

# setting -> (metric suffix, help)
SETTINGS: dict[str, tuple[str, str]] = {
    "max_connections": ("max_connections", "max_connections: client connections allowed"),
    "superuser_reserved_connections": (
        "superuser_reserved_connections",
        "superuser_reserved_connections: slots of max_connections kept for superusers",
    ),
    "shared_buffers": ("shared_buffers_bytes", "shared_buffers: the shared buffer cache"),
    "work_mem": ("work_mem_bytes", "work_mem: memory per sort or hash before spilling to disk"),
    "maintenance_work_mem": (
        "maintenance_work_mem_bytes",
        "maintenance_work_mem: memory per VACUUM, CREATE INDEX",
    ),
    "effective_cache_size": (
        "effective_cache_size_bytes",
        "effective_cache_size: the planner's assumption of cache size",
    ),
    "max_wal_size": (
        "max_wal_size_bytes",
        "max_wal_size: WAL between automatic checkpoints before one is requested",
    ),
    "checkpoint_timeout": (
        "checkpoint_timeout_seconds",
        "checkpoint_timeout: longest time between automatic checkpoints",
    ),
    "autovacuum": ("autovacuum", "autovacuum: 1 when the autovacuum launcher is on"),
    "autovacuum_freeze_max_age": (
        "autovacuum_freeze_max_age",
        "autovacuum_freeze_max_age: XID age that forces an anti-wraparound vacuum",
    ),
    "autovacuum_multixact_freeze_max_age": (
        "autovacuum_multixact_freeze_max_age",
        "autovacuum_multixact_freeze_max_age: multixact age forcing an anti-wraparound vacuum",
    ),
    "idle_in_transaction_session_timeout": (
        "idle_in_transaction_session_timeout_seconds",
        "idle_in_transaction_session_timeout: idle-in-transaction sessions end after it; 0: never",
    ),
}

# The names are this module's constants, not input: nothing to inject.
_NAMES = ", ".join(f"'{name}'" for name in SETTINGS)
SETTINGS_SQL = f"SELECT name, setting, unit, vartype FROM pg_settings WHERE name IN ({_NAMES})"  # noqa: S608
OWN_SQL: tuple[str, ...] = (SETTINGS_SQL,)

_UNITS = {
    "B": 1.0,
    "kB": 1024.0,
    "MB": 1024.0**2,
    "GB": 1024.0**3,
    "TB": 1024.0**4,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def unit_factor(unit: str | None) -> float:
    """What one unit of pg_settings.unit is in bytes or seconds (``8kB`` -> 8192)."""
    if not unit:
        return 1.0
    match = re.fullmatch(r"(\d*)\s*([a-zA-Z]+)", unit.strip())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"unknown pg_settings unit {unit!r}")
    return float(match.group(1) or 1) * _UNITS[match.group(2)]


def base_value(setting: str, unit: str | None, vartype: str) -> float:
    """A pg_settings value in base units: booleans 0/1, sizes in bytes, times in seconds."""
    if vartype == "bool":
        return 1.0 if setting == "on" else 0.0
    value = float(setting)
    if value < 0:  # -1 means "unset" / "use another setting": keep it recognisable
        return value
    return value * unit_factor(unit)


@dataclass(frozen=True, slots=True)
class Part:
    values: tuple[tuple[str, float], ...]  # (setting name, value in base units)


class Collector(QueryCollector):
    def __init__(self, config: Any) -> None:
        self.config = config

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        return (SETTINGS_SQL,)

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        values = []
        for name, setting, unit, vartype in results[0]:
            values.append((str(name), base_value(str(setting), unit, str(vartype))))
        return Part(tuple(values))


def families(part: Part, target: str) -> list[Metric]:
    out: list[Metric] = []
    for name, value in part.values:
        suffix, doc = SETTINGS[name]
        family = GaugeMetricFamily(f"sparki_postgres_setting_{suffix}", doc, labels=["target"])
        family.add_metric([target], value)
        out.append(family)
    return out
