"""The ``slabs`` collector: how each node's memory is carved into slab classes.

Memcached allocates memory in 1 MiB pages, each assigned to a slab class of one chunk
size; a node can evict in one class while another has free chunks (the classic
"evicting with memory free" puzzle), which ``stats`` alone cannot show. The number of
classes is bounded by the server (at most 63, set by -n and -f), so ``slab`` is a
bounded label: the class id, never a key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ...metrics import GaugeMetricFamily, Metric
from .context import NodeContext

MAX_CLASSES = 64  # memcached's MAX_NUMBER_OF_SLAB_CLASSES


@dataclass(frozen=True, slots=True)
class SlabClass:
    slab: str
    chunk_size: int
    pages: int
    chunks_per_page: int
    used_chunks: int
    free_chunks: int


@dataclass(frozen=True, slots=True)
class SlabsPart:
    classes: tuple[SlabClass, ...]
    malloced_bytes: int | None
    active_slabs: int | None


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def parse(stats: Mapping[str, str]) -> SlabsPart:
    by_class: dict[str, dict[str, str]] = {}
    for name, value in stats.items():
        slab, sep, field = name.partition(":")
        if sep and slab.isdigit() and len(by_class) <= MAX_CLASSES:
            by_class.setdefault(slab, {})[field] = value
    classes = tuple(
        SlabClass(
            slab,
            _int(f.get("chunk_size")),
            _int(f.get("total_pages")),
            _int(f.get("chunks_per_page")),
            _int(f.get("used_chunks")),
            _int(f.get("free_chunks")),
        )
        for slab, f in sorted(by_class.items(), key=lambda kv: int(kv[0]))
    )
    malloced = stats.get("total_malloced")
    active = stats.get("active_slabs")
    return SlabsPart(
        classes,
        _int(malloced) if malloced is not None else None,
        _int(active) if active is not None else None,
    )


async def collect(ctx: NodeContext) -> SlabsPart:
    return parse(await ctx.conn.stats("slabs"))


def families(target: str, parts: Sequence[tuple[str, SlabsPart]]) -> list[Metric]:
    base = ["target", "node"]
    malloced = GaugeMetricFamily(
        "sparki_memcached_malloced_bytes",
        "Memory the node has allocated to slab pages (total_malloced); evictions start when "
        "this reaches the memory limit, whatever memory_used_bytes says",
        labels=base,
    )
    active = GaugeMetricFamily(
        "sparki_memcached_slab_classes_active", "Slab classes with pages", labels=base
    )
    memory = GaugeMetricFamily(
        "sparki_memcached_slab_memory_bytes",
        "Memory assigned to a slab class (pages x chunks per page x chunk size)",
        labels=[*base, "slab"],
    )
    chunk = GaugeMetricFamily(
        "sparki_memcached_slab_chunk_size_bytes",
        "Chunk size of a slab class: items up to this size are stored in it",
        labels=[*base, "slab"],
    )
    chunks = GaugeMetricFamily(
        "sparki_memcached_slab_chunks",
        "Chunks of a slab class, by state (used holds an item, free does not)",
        labels=[*base, "slab", "state"],
    )
    for node, part in parts:
        if part.malloced_bytes is not None:
            malloced.add_metric([target, node], part.malloced_bytes)
        if part.active_slabs is not None:
            active.add_metric([target, node], part.active_slabs)
        for c in part.classes:
            where = [target, node, c.slab]
            memory.add_metric(where, c.pages * c.chunks_per_page * c.chunk_size)
            chunk.add_metric(where, c.chunk_size)
            chunks.add_metric([*where, "used"], c.used_chunks)
            chunks.add_metric([*where, "free"], c.free_chunks)
    return [malloced, active, memory, chunk, chunks]
