"""The ``stats`` collector: memory, items, hits and misses, evictions, connections,
traffic and per-command counters of each node, from one ``stats`` call.

Counters are exported raw, as the server reports them. A server restart starts them
from zero again; Prometheus' rate() and increase() treat a drop as a counter reset,
which is exactly what it is, and ``sparki_memcached_uptime_seconds`` shows when it
happened (the target logs it once, see target.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .context import NodeContext

# STAT name -> the `command` label of sparki_memcached_commands_total (a fixed set).
COMMANDS = {
    "cmd_get": "get",
    "cmd_set": "set",
    "cmd_touch": "touch",
    "cmd_flush": "flush",
    "cmd_meta": "meta",
}
# (STAT name prefix, command): key lookups that found their key or not.
LOOKUPS = ("get", "delete", "incr", "decr", "cas", "touch")

GAUGES = {
    # metric (without sparki_memcached_) -> (STAT, help)
    "memory_used_bytes": ("bytes", "Bytes used by stored items (stats bytes)"),
    "memory_limit_bytes": ("limit_maxbytes", "Memory limit for items (-m, limit_maxbytes)"),
    "items": ("curr_items", "Items currently stored"),
    "connections": ("curr_connections", "Open client connections, the exporter's own included"),
    "max_connections": ("max_connections", "Connection limit (-c, stats settings maxconns)"),
    "accepting_connections": (
        "accepting_conns",
        "1 while the server accepts new connections; 0 once it hit max_connections",
    ),
    "uptime_seconds": ("uptime", "Seconds since the server started; a drop is a restart"),
    "threads": ("threads", "Worker threads"),
}
COUNTERS = {
    "items_stored": ("total_items", "Items stored since the server started"),
    "evictions": ("evictions", "Items evicted from the LRU before their TTL to free memory"),
    "evicted_unfetched": (
        "evicted_unfetched",
        "Evicted items that were never read after being stored",
    ),
    "reclaimed": ("reclaimed", "Times an expired item's memory was reused for a new one"),
    "expired_unfetched": (
        "expired_unfetched",
        "Items that expired without ever being read after being stored",
    ),
    "get_hits": ("get_hits", "get lookups that found their key"),
    "get_misses": ("get_misses", "get lookups that did not find their key"),
    "get_expired": ("get_expired", "get lookups that found their key already expired"),
    "connections_opened": ("total_connections", "Connections opened since the server started"),
    "rejected_connections": (
        "rejected_connections",
        "Connections refused because max_connections was reached",
    ),
    "listen_disabled": (
        "listen_disabled_num",
        "Times the server stopped accepting connections at max_connections",
    ),
    "read_bytes": ("bytes_read", "Bytes read from the network by the server"),
    "written_bytes": ("bytes_written", "Bytes written to the network by the server"),
    "store_too_large": ("store_too_large", "Stores refused because the item was too large"),
    "store_no_memory": ("store_no_memory", "Stores refused for lack of memory"),
}


@dataclass(frozen=True, slots=True)
class StatsPart:
    values: tuple[tuple[str, float], ...]  # STAT name -> number, only numeric ones kept
    version: str
    pid: int

    def get(self, name: str) -> float | None:
        return dict(self.values).get(name)


def parse(stats: Mapping[str, str]) -> StatsPart:
    wanted = (
        {stat for stat, _ in GAUGES.values()}
        | {stat for stat, _ in COUNTERS.values()}
        | set(COMMANDS)
        | {f"{c}_{r}" for c in LOOKUPS for r in ("hits", "misses")}
        | {"cas_badval"}
    )
    values = []
    for name in sorted(wanted & stats.keys()):
        try:
            values.append((name, float(stats[name])))
        except ValueError:
            continue
    pid = stats.get("pid", "")
    return StatsPart(tuple(values), stats.get("version", "unknown")[:40], int(pid or 0))


async def collect(ctx: NodeContext) -> StatsPart:
    return parse(await ctx.conn.stats())


def families(target: str, parts: Sequence[tuple[str, StatsPart]]) -> list[Metric]:
    out: list[Metric] = []
    base = ["target", "node"]
    for metric, (stat, doc) in GAUGES.items():
        fam = GaugeMetricFamily(f"sparki_memcached_{metric}", doc, labels=base)
        for node, part in parts:
            value = part.get(stat)
            if value is not None:
                fam.add_metric([target, node], value)
        out.append(fam)
    for metric, (stat, doc) in COUNTERS.items():
        counter = CounterMetricFamily(f"sparki_memcached_{metric}", doc, labels=base)
        for node, part in parts:
            value = part.get(stat)
            if value is not None:
                counter.add_metric([target, node], value)
        out.append(counter)
    commands = CounterMetricFamily(
        "sparki_memcached_commands",
        "Commands processed, by command (get counts every key of a multi-get)",
        labels=[*base, "command"],
    )
    results = CounterMetricFamily(
        "sparki_memcached_command_results",
        "Key lookups of get, delete, incr, decr, cas and touch, by whether the key was "
        "found (hit), not found (miss) or, for cas, found with another version (badval)",
        labels=[*base, "command", "result"],
    )
    info = GaugeMetricFamily(
        "sparki_memcached_server_info", "Server version; always 1", labels=[*base, "version"]
    )
    for node, part in parts:
        for stat, command in COMMANDS.items():
            value = part.get(stat)
            if value is not None:
                commands.add_metric([target, node, command], value)
        for command in LOOKUPS:
            for stat_suffix, result in (("hits", "hit"), ("misses", "miss")):
                value = part.get(f"{command}_{stat_suffix}")
                if value is not None:
                    results.add_metric([target, node, command, result], value)
        badval = part.get("cas_badval")
        if badval is not None:
            results.add_metric([target, node, "cas", "badval"], badval)
        info.add_metric([target, node, part.version], 1)
    out += [commands, results, info]
    return out
