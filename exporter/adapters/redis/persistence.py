"""The ``persistence`` collector: whether RDB snapshots and the AOF are being written.

Reads only the poll's INFO (persistence section). A failed BGSAVE (full disk, a
removed or read-only ``dir``) leaves ``rdb_last_bgsave_status:err`` until a save
succeeds; with the default ``stop-writes-on-bgsave-error yes`` the server then refuses
writes. The last save time is exported as a timestamp (age = ``time() - value``), so
it does not change between polls of an idle server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...metrics import Metric
from .config import RedisConfig
from .context import NodeContext
from .replies import as_int
from .series import NodeFamilies, role_of


@dataclass(frozen=True, slots=True)
class PersistencePart:
    role: str
    bgsave_ok: bool | None
    last_save: int | None  # unix time of the last successful save
    changes: int
    bgsave_running: bool
    aof_enabled: bool
    aof_write_ok: bool | None  # aof enabled only
    aof_rewrite_ok: bool | None  # aof enabled only


def _ok(value: str | None) -> bool | None:
    return None if value is None else value == "ok"


class Collector:
    def __init__(self, config: RedisConfig) -> None:
        self.config = config

    async def collect(self, ctx: NodeContext) -> PersistencePart:
        info = ctx.info
        aof = info.get("aof_enabled") == "1"
        last = as_int(info.get("rdb_last_save_time"))
        return PersistencePart(
            role=role_of(ctx.role),
            bgsave_ok=_ok(info.get("rdb_last_bgsave_status")),
            last_save=last if last > 0 else None,
            changes=as_int(info.get("rdb_changes_since_last_save")),
            bgsave_running=info.get("rdb_bgsave_in_progress") == "1",
            aof_enabled=aof,
            aof_write_ok=_ok(info.get("aof_last_write_status")) if aof else None,
            aof_rewrite_ok=_ok(info.get("aof_last_bgrewrite_status")) if aof else None,
        )


def _bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


def families(parts: Sequence[tuple[str, Any]], target: str) -> list[Metric]:
    f = NodeFamilies(parts, target)
    return [
        f.gauge(
            "sparki_redis_rdb_last_bgsave_ok",
            "1 when the last RDB background save succeeded (rdb_last_bgsave_status ok), "
            "0 when it failed",
            lambda p: _bool(p.bgsave_ok),
        ),
        f.gauge(
            "sparki_redis_rdb_last_save_timestamp_seconds",
            "Unix time of the last successful RDB save (rdb_last_save_time)",
            lambda p: p.last_save,
        ),
        f.gauge(
            "sparki_redis_rdb_changes_since_last_save",
            "Writes not yet in an RDB snapshot (rdb_changes_since_last_save)",
            lambda p: p.changes,
        ),
        f.gauge(
            "sparki_redis_rdb_bgsave_in_progress",
            "1 while an RDB background save runs",
            lambda p: int(p.bgsave_running),
        ),
        f.gauge(
            "sparki_redis_aof_enabled",
            "1 when the append-only file is on (appendonly yes)",
            lambda p: int(p.aof_enabled),
        ),
        f.gauge(
            "sparki_redis_aof_last_write_ok",
            "AOF enabled only: 1 when the last write to the AOF succeeded "
            "(aof_last_write_status ok), 0 when it failed",
            lambda p: _bool(p.aof_write_ok),
        ),
        f.gauge(
            "sparki_redis_aof_last_rewrite_ok",
            "AOF enabled only: 1 when the last AOF rewrite succeeded "
            "(aof_last_bgrewrite_status ok)",
            lambda p: _bool(p.aof_rewrite_ok),
        ),
    ]
