"""PostgreSQL replication health beyond lag: the standby's WAL receiver, the primary's
replication slots and how many standbys are connected.

Lag alone hides broken replication. A standby whose WAL receiver died knows of no new
WAL, so "known minus replayed" reads 0 s and 0 bytes while it falls further behind; a
standby that disconnects from the primary drops out of pg_stat_replication, and its lag
series simply vanishes. This module adds what tells those apart:

- on a standby, whether the WAL receiver is streaming (``pg_stat_wal_receiver``), and a
  lag that keeps growing while it is not: the time since the receiver last heard from
  the primary (remembered across polls, since the view has no row once the receiver is
  gone), never 0;
- on a primary, every replication slot (``pg_replication_slots``): active or not, the
  WAL it retains, and ``wal_status`` (reserved, extended, unreserved, lost);
- on a primary, the number of streaming standbys, and the optional ``expected_standbys``
  of the target's config, so a missing standby alerts although its series is gone.

Kept out of postgres.py (which only wires it in) so the two evolve separately; the
leading underscore keeps the adapter scan from taking it for an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from psycopg import AsyncConnection

Metric = GaugeMetricFamily

# One row while the WAL receiver runs (PostgreSQL 13+ columns), none otherwise.
RECEIVER_SQL = (
    "SELECT status, extract(epoch FROM last_msg_receipt_time)::float8, "
    "extract(epoch FROM now())::float8 FROM pg_stat_wal_receiver"
)
# Fallback reference for a standby whose receiver was never seen streaming by this
# exporter: the last replayed transaction's commit time.
REPLAY_TIME_SQL = (
    "SELECT extract(epoch FROM pg_last_xact_replay_timestamp())::float8, "
    "extract(epoch FROM now())::float8"
)
SLOTS_SQL = (
    "SELECT slot_name, slot_type, active, "
    "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::float8, "
    "coalesce(wal_status, 'unknown') "
    "FROM pg_replication_slots ORDER BY slot_name"
)
STANDBYS_SQL = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")
# Every statement this module runs: the target learns their queryids (EXPLAIN) so the
# exporter's own work never shows in the statement histograms. A query added here and
# not listed would be counted as the application's.
OWN_SQL = (RECEIVER_SQL, REPLAY_TIME_SQL, SLOTS_SQL, STANDBYS_SQL)


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    slot_type: str  # physical or logical
    active: bool
    retained_bytes: float
    wal_status: str


@dataclass(frozen=True, slots=True)
class ReplicationHealth:
    """What one poll learned; ``receiver_up`` is None on a primary, ``slots`` and
    ``standbys`` are None on a standby."""

    receiver_up: bool | None
    # Seconds the standby has been without a streaming receiver (None while streaming).
    receiver_down_seconds: float | None
    slots: tuple[Slot, ...] | None
    standbys: int | None
    expected_standbys: int | None


class ReplicationWatch:
    """Per-target state across polls: when the WAL receiver last heard the primary."""

    def __init__(self, expected_standbys: int | None) -> None:
        self.expected_standbys = expected_standbys
        self.last_receipt: float | None = None

    async def poll(self, conn: AsyncConnection[Any], in_recovery: bool) -> ReplicationHealth:
        if in_recovery:
            return await self._standby(conn)
        slots = tuple(
            Slot(str(name), str(kind), bool(active), max(0.0, float(retained)), str(status))
            for name, kind, active, retained, status in await _rows(conn, SLOTS_SQL)
        )
        standbys = int((await _rows(conn, STANDBYS_SQL))[0][0])
        return ReplicationHealth(None, None, slots, standbys, self.expected_standbys)

    async def _standby(self, conn: AsyncConnection[Any]) -> ReplicationHealth:
        rows = await _rows(conn, RECEIVER_SQL)
        if rows and rows[0][0] == "streaming":
            receipt, now = rows[0][1], rows[0][2]
            self.last_receipt = float(receipt if receipt is not None else now)
            return ReplicationHealth(True, None, None, None, None)
        if rows and rows[0][1] is not None:
            self.last_receipt = float(rows[0][1])
        reference = self.last_receipt
        replay, now = (await _rows(conn, REPLAY_TIME_SQL))[0]
        if reference is None and replay is not None:
            reference = float(replay)
        down = 0.0 if reference is None else max(0.0, float(now) - reference)
        return ReplicationHealth(False, down, None, None, None)


async def _rows(conn: AsyncConnection[Any], sql: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql.encode())
    return [tuple(r) for r in await cur.fetchall()]


def standby_lag_seconds(health: ReplicationHealth | None, lag_seconds: float) -> float:
    """The standby's lag: the replay lag while streaming, else at least the time since
    the receiver last heard from the primary (it grows; "0" would say all is well)."""
    if health is None or health.receiver_down_seconds is None:
        return lag_seconds
    return max(lag_seconds, health.receiver_down_seconds)


def families(target: str, health: ReplicationHealth | None) -> list[Metric]:
    """Gauges for one target's replication health."""
    if health is None:
        return []
    t = target
    out: list[Metric] = []
    if health.receiver_up is not None:
        up = GaugeMetricFamily(
            "sparki_postgres_wal_receiver_up",
            "On a standby: 1 while its WAL receiver streams from the primary, else 0",
            labels=["target"],
        )
        up.add_metric([t], 1 if health.receiver_up else 0)
        out.append(up)
    if health.slots is not None:
        active = GaugeMetricFamily(
            "sparki_postgres_replication_slot_active",
            "On a primary: 1 when a consumer is attached to the replication slot",
            labels=["target", "slot", "slot_type"],
        )
        retained = GaugeMetricFamily(
            "sparki_postgres_replication_slot_retained_wal_bytes",
            "WAL the slot keeps on the primary's disk (current LSN - restart_lsn)",
            labels=["target", "slot", "slot_type"],
        )
        status = GaugeMetricFamily(
            "sparki_postgres_replication_slot_wal_status",
            "1 for the slot's wal_status (lost: the standby can no longer catch up)",
            labels=["target", "slot", "wal_status"],
        )
        for slot in health.slots:
            active.add_metric([t, slot.name, slot.slot_type], 1 if slot.active else 0)
            retained.add_metric([t, slot.name, slot.slot_type], slot.retained_bytes)
            for state in WAL_STATUSES:
                status.add_metric([t, slot.name, state], 1 if slot.wal_status == state else 0)
        out += [active, retained, status]
    if health.standbys is not None:
        standbys = GaugeMetricFamily(
            "sparki_postgres_replication_standbys",
            "On a primary: standbys streaming from it",
            labels=["target"],
        )
        standbys.add_metric([t], health.standbys)
        out.append(standbys)
        if health.expected_standbys is not None:
            expected = GaugeMetricFamily(
                "sparki_postgres_replication_expected_standbys",
                "On a primary: expected_standbys from the target's configuration",
                labels=["target"],
            )
            expected.add_metric([t], health.expected_standbys)
            out.append(expected)
    return out
