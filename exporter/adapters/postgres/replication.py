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

It is the ``replication`` collector: besides that health, it reads the replay lag (per
standby on a primary from ``pg_stat_replication``, ``replica="self"`` on a standby).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...metrics import GaugeMetricFamily, Metric
from .batch import QueryCollector, Rows
from .config import PostgresConfig

PRIMARY_LAG_SQL = (
    "SELECT coalesce(nullif(application_name, ''), client_addr::text, pid::text), "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8, "
    "coalesce(extract(epoch FROM replay_lag), 0)::float8 "
    "FROM pg_stat_replication ORDER BY 1, pid"
)
# On a standby, compare what was replayed with the newest WAL position known from the
# primary (the receiver's latest_end_lsn, else what was received). Time lag is 0 when
# everything known has been replayed, so an idle primary never looks like growing lag.
STANDBY_LAG_SQL = (
    "WITH r AS (SELECT greatest(pg_last_wal_receive_lsn(), "
    "  (SELECT latest_end_lsn FROM pg_stat_wal_receiver)) AS known, "
    "  pg_last_wal_replay_lsn() AS replayed) "
    "SELECT coalesce(greatest(pg_wal_lsn_diff(known, replayed), 0), 0)::float8, "
    "CASE WHEN known IS NULL OR replayed IS NULL OR known <= replayed THEN 0 "
    "ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8 "
    "FROM r"
)

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
OWN_SQL = (
    PRIMARY_LAG_SQL,
    STANDBY_LAG_SQL,
    RECEIVER_SQL,
    REPLAY_TIME_SQL,
    SLOTS_SQL,
    STANDBYS_SQL,
)


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

    @staticmethod
    def queries(in_recovery: bool) -> tuple[str, ...]:
        # On a standby the replay time is read every poll, though only a receiver that
        # is not streaming needs it: it costs less than a round trip of its own.
        return (RECEIVER_SQL, REPLAY_TIME_SQL) if in_recovery else (SLOTS_SQL, STANDBYS_SQL)

    def parse(self, results: Sequence[Rows], in_recovery: bool) -> ReplicationHealth:
        """The health, from the rows of ``queries(in_recovery)``, in order."""
        if in_recovery:
            return self._standby(results[0], results[1])
        slots = tuple(
            Slot(str(name), str(kind), bool(active), max(0.0, float(retained)), str(status))
            for name, kind, active, retained, status in results[0]
        )
        standbys = int(results[1][0][0])
        return ReplicationHealth(None, None, slots, standbys, self.expected_standbys)

    def _standby(self, receiver: Rows, replay_time: Rows) -> ReplicationHealth:
        if receiver and receiver[0][0] == "streaming":
            receipt, now = receiver[0][1], receiver[0][2]
            self.last_receipt = float(receipt if receipt is not None else now)
            return ReplicationHealth(True, None, None, None, None)
        if receiver and receiver[0][1] is not None:
            self.last_receipt = float(receiver[0][1])
        reference = self.last_receipt
        replay, now = replay_time[0]
        if reference is None and replay is not None:
            reference = float(replay)
        down = 0.0 if reference is None else max(0.0, float(now) - reference)
        return ReplicationHealth(False, down, None, None, None)


def standby_lag_seconds(health: ReplicationHealth | None, lag_seconds: float) -> float:
    """The standby's lag: the replay lag while streaming, else at least the time since
    the receiver last heard from the primary (it grows; "0" would say all is well)."""
    if health is None or health.receiver_down_seconds is None:
        return lag_seconds
    return max(lag_seconds, health.receiver_down_seconds)


def health_families(target: str, health: ReplicationHealth | None) -> list[Metric]:
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


@dataclass(frozen=True, slots=True)
class Part:
    lag: tuple[tuple[str, float, float], ...]  # replica, seconds, bytes
    health: ReplicationHealth


class Collector(QueryCollector):
    """Per target: the replay lag and the replication health, read every poll."""

    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self.watch = ReplicationWatch(config.expected_standbys)

    def queries(self, version: int, standby: bool) -> tuple[str, ...]:
        lag = STANDBY_LAG_SQL if standby else PRIMARY_LAG_SQL
        return (lag, *self.watch.queries(standby))

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Part:
        lag = self._lag(results[0], standby)
        health = self.watch.parse(results[1:], standby)
        lag = tuple((r, standby_lag_seconds(health, s), b) for r, s, b in lag)
        return Part(lag, health)

    @staticmethod
    def _lag(rows: Rows, in_recovery: bool) -> tuple[tuple[str, float, float], ...]:
        if in_recovery:
            lag_bytes, lag_seconds = rows[0]
            return (("self", float(lag_seconds), float(lag_bytes)),)
        out: list[tuple[str, float, float]] = []
        seen: dict[str, int] = {}
        for name, lag_bytes, lag_seconds in rows:
            if lag_bytes is None:  # replay_lsn hidden: the role lacks pg_read_all_stats
                continue
            replica = str(name)
            seen[replica] = seen.get(replica, 0) + 1
            if seen[replica] > 1:  # two standbys with one application_name
                replica = f"{replica}#{seen[replica]}"
            lag_bytes = max(0.0, float(lag_bytes))
            seconds = 0.0 if lag_bytes == 0 else max(0.0, float(lag_seconds))
            out.append((replica, seconds, lag_bytes))
        return tuple(out)


def families(part: Part, target: str) -> list[Metric]:
    lag_s = GaugeMetricFamily(
        "sparki_postgres_replication_lag_seconds",
        "Replay lag in seconds; per standby on a primary, 'self' on a standby",
        labels=["target", "replica"],
    )
    lag_b = GaugeMetricFamily(
        "sparki_postgres_replication_lag_bytes",
        "WAL bytes not yet replayed",
        labels=["target", "replica"],
    )
    for replica, seconds, nbytes in part.lag:
        lag_s.add_metric([target, replica], seconds)
        lag_b.add_metric([target, replica], nbytes)
    return [lag_s, lag_b, *health_families(target, part.health)]
