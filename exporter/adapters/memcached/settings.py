"""The ``settings`` collector: the few ``stats settings`` values that explain the rest.

Whether the node may evict at all (``-M`` turns evictions into SERVER_ERROR out of
memory), the largest item it stores, its idle timeout, and whether authentication and
TLS are on. File paths (the auth file, TLS keys) are in the reply too and are never
exported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ...metrics import GaugeMetricFamily, Metric
from .context import NodeContext


@dataclass(frozen=True, slots=True)
class SettingsPart:
    evictions_enabled: bool | None
    item_size_max: int | None
    idle_timeout: int | None
    auth_enabled: bool
    tls_enabled: bool
    growth_factor: float | None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse(settings: Mapping[str, str]) -> SettingsPart:
    evictions = settings.get("evictions")
    item_max = _number(settings.get("item_size_max"))
    idle = _number(settings.get("idle_timeout"))
    ascii_auth = settings.get("auth_enabled_ascii", "no")
    return SettingsPart(
        evictions_enabled=None if evictions is None else evictions == "on",
        item_size_max=None if item_max is None else int(item_max),
        idle_timeout=None if idle is None else int(idle),
        # auth_enabled_ascii is the auth file's path when on: only "on or off" is kept.
        auth_enabled=settings.get("auth_enabled_sasl") == "yes" or ascii_auth not in ("no", ""),
        tls_enabled=settings.get("ssl_enabled") == "yes",
        growth_factor=_number(settings.get("growth_factor")),
    )


async def collect(ctx: NodeContext) -> SettingsPart:
    return parse(await ctx.conn.stats("settings"))


def families(target: str, parts: Sequence[tuple[str, SettingsPart]]) -> list[Metric]:
    base = ["target", "node"]

    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"sparki_memcached_{name}", doc, labels=base)

    evictions = gauge(
        "evictions_enabled",
        "1 when the node evicts items to make room (the default); 0 with -M, where a "
        "full node refuses stores with SERVER_ERROR out of memory",
    )
    item_max = gauge("item_size_max_bytes", "Largest item the node stores (-I)")
    idle = gauge("idle_timeout_seconds", "Seconds after which idle connections are closed; 0 never")
    auth = gauge("auth_enabled", "1 when the node requires authentication (SASL or ASCII)")
    tls = gauge("tls_enabled", "1 when the node serves TLS")
    growth = gauge("slab_growth_factor", "Chunk size ratio between slab classes (-f)")
    for node, p in parts:
        key = [target, node]
        if p.evictions_enabled is not None:
            evictions.add_metric(key, 1 if p.evictions_enabled else 0)
        if p.item_size_max is not None:
            item_max.add_metric(key, p.item_size_max)
        if p.idle_timeout is not None:
            idle.add_metric(key, p.idle_timeout)
        auth.add_metric(key, 1 if p.auth_enabled else 0)
        tls.add_metric(key, 1 if p.tls_enabled else 0)
        if p.growth_factor is not None:
            growth.add_metric(key, p.growth_factor)
    return [evictions, item_max, idle, auth, tls, growth]
