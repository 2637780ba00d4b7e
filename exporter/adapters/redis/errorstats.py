"""The ``errorstats`` collector: error replies the server sent, by error prefix.

The errorstats section of INFO (Redis 6.2+, Valkey; part of the default INFO the
target already read, so no extra command) counts error replies per prefix (``ERR``,
``WRONGTYPE``, ``NOPERM``, ``OOM``, ...); ``total_error_replies`` (INFO stats) counts
them all. The prefix set is bounded: the first ``errorstats_max_prefixes`` prefixes a
node reports keep their own series for the exporter's lifetime (so a series never
vanishes and comes back), any further ones are summed under ``prefix="other"``.
Prefixes are upper-case words chosen by the server or by a module's or script's error
text; anything that is not ``[A-Z0-9_]`` is ``other`` too, so a label never carries
arbitrary text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import CounterMetricFamily, Metric
from .config import RedisConfig
from .context import NodeContext
from .replies import as_int, parse_fields
from .series import NodeFamilies, role_of

OTHER = "other"
_PREFIX = re.compile(r"[A-Z0-9_]{1,40}")


@dataclass(frozen=True, slots=True)
class ErrorsPart:
    role: str
    total: int | None  # total_error_replies
    by_prefix: tuple[tuple[str, int], ...]


class Collector:
    def __init__(self, config: RedisConfig) -> None:
        self.limit = config.errorstats_max_prefixes
        self.known: dict[str, list[str]] = {}  # node -> prefixes with their own series

    async def collect(self, ctx: NodeContext) -> ErrorsPart:
        info = ctx.info  # the default INFO includes the errorstats section
        known = self.known.setdefault(ctx.node, [])
        counts: dict[str, int] = {}
        other: int | None = None
        for key, value in sorted(info.items()):
            if not key.startswith("errorstat_"):
                continue
            prefix = key[len("errorstat_") :]
            count = as_int(parse_fields(value).get("count"))
            if prefix not in known and _PREFIX.fullmatch(prefix) and len(known) < self.limit:
                known.append(prefix)
            if prefix in known:
                counts[prefix] = count
            else:
                other = (other or 0) + count
        if other is not None or OTHER in counts:
            counts[OTHER] = other or 0
        total = ctx.info.get("total_error_replies")
        return ErrorsPart(
            role=role_of(ctx.role),
            total=as_int(total) if total is not None else None,
            by_prefix=tuple(sorted(counts.items())),
        )


def families(parts: Sequence[tuple[str, Any]], target: str) -> list[Metric]:
    f = NodeFamilies(parts, target)
    by_prefix = CounterMetricFamily(
        "sparki_redis_errors",
        "Error replies sent, by error prefix (INFO errorstats); prefixes beyond "
        'errorstats_max_prefixes are summed under prefix="other"',
        labels=f.names("prefix"),
    )
    for node, p in parts:
        for prefix, count in p.by_prefix:
            by_prefix.add_metric(f.values(node, p, prefix), count)
    return [
        by_prefix,
        f.counter(
            "sparki_redis_error_replies",
            "Error replies sent, all prefixes (total_error_replies)",
            lambda p: p.total,
        ),
    ]
