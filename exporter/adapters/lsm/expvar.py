"""Badger's own counters and sizes from the host service's Go expvar (/debug/vars).

Badger publishes them under three spellings: ``badger_v2_*`` (v2), ``badger_v3_*``
(v3 and v4.0-4.1) with the names of v1.6 (``badger_*``), and, from v4.2, unversioned
``badger_*`` with new names (``badger_size_bytes_lsm``, ``badger_put_num_user``, ...).
All are read into one set of metrics. Sizes and pending writes are maps keyed by the
store's directory (a host may open several stores), per-level gets and bloom hits maps
keyed by level (``l0``, ``l1``, ...).

Variables this module does not know are ignored. An expected one that is missing (an
older or newer Badger) leaves its metric out and sets sparki_capability{capability=
"expvar"} to 0, logged once: never a failed poll. Badger recomputes its size maps about
once a minute (and at open), so they lag the directory collector's numbers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .context import ExpvarError, LsmContext

log = logging.getLogger("sparki.lsm")

MAX_KEYS = 32  # directories or levels kept per map: a bounded label set

# canonical name -> (shape, name in v1.6/v2/v3 after the prefix, name from v4.2)
# shape: int (a plain counter), dir (a map by directory), level (a map by level)
VARS: dict[str, tuple[str, str, str | None]] = {
    "lsm_size": ("dir", "lsm_size_bytes", "badger_size_bytes_lsm"),
    "vlog_size": ("dir", "vlog_size_bytes", "badger_size_bytes_vlog"),
    "pending_writes": ("dir", "pending_writes_total", "badger_write_pending_num_memtable"),
    "gets": ("int", "gets_total", "badger_get_num_user"),
    "puts": ("int", "puts_total", "badger_put_num_user"),
    # v4.2 dropped it (and v2 declares it but never counts): absent there.
    "blocked_puts": ("int", "blocked_puts_total", None),
    # Reads and writes of value log files (v4.2 says so in its names).
    "disk_reads": ("int", "disk_reads_total", "badger_read_num_vlog"),
    "disk_writes": ("int", "disk_writes_total", "badger_write_num_vlog"),
    "read_bytes": ("int", "read_bytes", "badger_read_bytes_vlog"),
    "written_bytes": ("int", "written_bytes", "badger_write_bytes_vlog"),
    "lsm_level_gets": ("level", "lsm_level_gets_total", "badger_get_num_lsm"),
    "lsm_bloom_hits": ("level", "lsm_bloom_hits_total", "badger_hit_num_lsm_bloom_filter"),
}


@dataclass(frozen=True, slots=True)
class Expvar:
    generation: str  # "v2", "v3", "v4", "v1" or "" (no Badger variables at all)
    ints: tuple[tuple[str, int], ...]
    maps: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    missing: tuple[str, ...]  # expected variables (their expvar names) not found


def _generation(data: dict[str, Any]) -> tuple[str, str]:
    """(generation, prefix of the legacy names); the v4.2 names need no prefix."""
    for prefix, gen in (("badger_v2_", "v2"), ("badger_v3_", "v3")):
        if any(k.startswith(prefix) for k in data):
            return gen, prefix
    if any(v4 in data for _, _, v4 in VARS.values() if v4):
        return "v4", ""
    if any("badger_" + legacy in data for _, legacy, _ in VARS.values()):
        return "v1", "badger_"
    return "", ""


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def parse(data: dict[str, Any]) -> Expvar:
    """Reduce a /debug/vars object to Badger's variables."""
    gen, prefix = _generation(data)
    ints: list[tuple[str, int]] = []
    maps: list[tuple[str, tuple[tuple[str, int], ...]]] = []
    missing: list[str] = []
    if not gen:
        return Expvar("", (), (), ("badger_*",))
    for canonical, (shape, legacy, v4) in VARS.items():
        name = v4 if gen == "v4" else prefix + legacy
        if name is None:
            continue
        value = data.get(name)
        if shape == "int":
            number = _number(value)
            if number is None:
                missing.append(name)
            else:
                ints.append((canonical, number))
            continue
        if not isinstance(value, dict):
            missing.append(name)
            continue
        entries = sorted((str(k), n) for k, v in value.items() if (n := _number(v)) is not None)
        maps.append((canonical, tuple(entries[:MAX_KEYS])))
    return Expvar(gen, tuple(ints), tuple(maps), tuple(missing))


async def collect(ctx: LsmContext) -> Expvar:
    if ctx.http is None or ctx.config.expvar_url is None:
        raise ExpvarError("expvar_url is not set")
    async with ctx.http.get(ctx.config.expvar_url) as resp:
        if resp.status != 200:
            raise ExpvarError(f"the expvar endpoint answered HTTP {resp.status}")
        body = await resp.read()
    try:
        data = json.loads(body)
    except ValueError:
        raise ExpvarError(
            "the expvar endpoint did not answer JSON (is expvar_url Go's /debug/vars?)"
        ) from None
    if not isinstance(data, dict):
        raise ExpvarError("the expvar endpoint did not answer a JSON object")
    return parse(data)


COUNTERS = {
    "gets": ("sparki_lsm_badger_gets", "Get calls of the host on the store"),
    "puts": (
        "sparki_lsm_badger_puts",
        "Entries written (Badger counts each transaction's commit marker as one too)",
    ),
    "blocked_puts": (
        "sparki_lsm_badger_blocked_puts",
        "Entries Badger refused in a write batch (where it counts them; v2 never does)",
    ),
    "disk_reads": ("sparki_lsm_badger_disk_reads", "Reads from value log files"),
    "disk_writes": ("sparki_lsm_badger_disk_writes", "Writes to value log files"),
    "read_bytes": ("sparki_lsm_badger_read_bytes", "Bytes read from value log files"),
    "written_bytes": ("sparki_lsm_badger_written_bytes", "Bytes written to value log files"),
}
MAPS = {
    "lsm_size": (
        "sparki_lsm_badger_lsm_size_bytes",
        "LSM tree (SSTable) bytes by directory, as Badger last computed them (about every minute)",
        "dir",
        False,
    ),
    "vlog_size": (
        "sparki_lsm_badger_vlog_size_bytes",
        "Value log bytes by directory, as Badger last computed them (about every minute)",
        "dir",
        False,
    ),
    "pending_writes": (
        "sparki_lsm_badger_pending_writes",
        "Write requests queued for the write loop, by directory",
        "dir",
        False,
    ),
    "lsm_level_gets": (
        "sparki_lsm_badger_lsm_level_gets",
        "Gets served per LSM level",
        "level",
        True,
    ),
    "lsm_bloom_hits": (
        "sparki_lsm_badger_lsm_bloom_hits",
        "Gets a level's bloom filter answered (the table was skipped), per level",
        "level",
        True,
    ),
}


def families(target: str, e: Expvar) -> list[Metric]:
    out: list[Metric] = []
    for canonical, value in e.ints:
        name, doc = COUNTERS[canonical]
        f = CounterMetricFamily(name, doc, labels=["target"])
        f.add_metric([target], float(value))
        out.append(f)
    for canonical, entries in e.maps:
        name, doc, label, counter = MAPS[canonical]
        cls = CounterMetricFamily if counter else GaugeMetricFamily
        fam = cls(name, doc, labels=["target", label])
        for key, value in entries:
            fam.add_metric([target, key], float(value))
        out.append(fam)
    return out
