"""The PostgreSQL health collectors' catalog: wraparound, transactions, locks, vacuum,
checkpoints and WAL, archiver, settings.

Part of the postgres catalog (exporter/adapters/postgres/catalog.py joins it to the
rest): driver-free like the catalog itself.
"""

from __future__ import annotations

from typing import Any

from ...catalog_model import Recording, Signal
from ...collector import CollectorSpec

# --- health collectors (pgcov) ---------------------------------------------------------
# Collectors beyond latency and replication: what a DBA checks when PostgreSQL "feels
# slow" or before it stops (wraparound, a stuck archiver). Each is a module of the same
# name in this package; all are cheap (one or two catalog queries) and on by default.

HEALTH_COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec("database_size", "pg_database_size of every non-template database"),
    CollectorSpec("locks", "pg_locks by mode, granted or waiting; backends waiting for a lock"),
    CollectorSpec(
        "activity_age", "age of the oldest open transaction and idle-in-transaction session"
    ),
    CollectorSpec("wraparound", "age(datfrozenxid) and mxid_age(datminmxid) per database"),
    CollectorSpec(
        "vacuum", "top-N tables by dead tuples, last (auto)vacuum/analyze, autovacuum workers"
    ),
    CollectorSpec("checkpoints", "pg_stat_bgwriter / pg_stat_checkpointer and pg_stat_wal"),
    CollectorSpec("archiver", "pg_stat_archiver: WAL archived and failed, last success/failure"),
    CollectorSpec("settings", "a few pg_settings (memory, connections, autovacuum) in base units"),
)

# XIDs and multixact IDs compare modulo 2^32: 2^31 is how far apart two may be.
WRAPAROUND_LIMIT = 2**31
PG_XID_WRAP = "target_datname:sparki_postgres_database_xid_age:wraparound_fraction"
PG_MXID_WRAP = "target_datname:sparki_postgres_database_mxid_age:wraparound_fraction"
PG_DEAD_RATIO = "target_table:sparki_postgres_table_dead_tuples:ratio"
PG_AUTOVACUUM_UTIL = "target:sparki_postgres_autovacuum_workers:utilization"
# Only where the server archives (not with archive_mode off, nor on on a standby):
# failures elsewhere are nobody's backup gap. In parentheses, as rules append "> x".
PG_ARCHIVE_FAIL_RATE = (
    "(rate(sparki_postgres_archiver_failed_total[15m])"
    " * on (job, instance, target) (sparki_postgres_archiver_enabled == 1))"
)

HEALTH_RECORDINGS: tuple[Recording, ...] = (
    # The share of the 2^31 limit a database has used: the exporter exports the raw
    # ages (METRICS.md: ratios are computed in rules), the alerts read these.
    Recording("postgres", PG_XID_WRAP, f"sparki_postgres_database_xid_age / {WRAPAROUND_LIMIT}"),
    Recording("postgres", PG_MXID_WRAP, f"sparki_postgres_database_mxid_age / {WRAPAROUND_LIMIT}"),
    Recording(
        "postgres",
        PG_DEAD_RATIO,
        "sparki_postgres_table_dead_tuples"
        " / ((sparki_postgres_table_dead_tuples + sparki_postgres_table_live_tuples) > 0)",
    ),
    Recording(
        "postgres",
        PG_AUTOVACUUM_UTIL,
        "sparki_postgres_autovacuum_workers / (sparki_postgres_autovacuum_max_workers > 0)",
    ),
)

HEALTH_SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="postgres_xid_wraparound",
        adapter="postgres",
        alert="SparkiPostgresXidWraparound",
        title="PostgreSQL transaction ID age / 2^31",
        value=PG_XID_WRAP,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "datname"),
        summary=(
            "Database {{ $labels.datname }} on {{ $labels.target }} used over [threshold]"
            " of the transaction IDs before wraparound"
        ),
        description=(
            "age(datfrozenxid) of {{ $labels.datname }} on {{ $labels.target }} is [value] of"
            " 2^31 (threshold [threshold] for [for]): autovacuum is not freezing it. Near"
            " the limit PostgreSQL refuses every write until a VACUUM completes."
        ),
    ),
    Signal(
        key="postgres_mxid_wraparound",
        adapter="postgres",
        alert="SparkiPostgresMultixactWraparound",
        title="PostgreSQL multixact ID age / 2^31",
        value=PG_MXID_WRAP,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "datname"),
        summary=(
            "Database {{ $labels.datname }} on {{ $labels.target }} used over [threshold]"
            " of the multixact IDs before wraparound"
        ),
        description=(
            "mxid_age(datminmxid) of {{ $labels.datname }} on {{ $labels.target }} is"
            " [value] of 2^31 (threshold [threshold] for [for]). Near the limit PostgreSQL"
            " refuses every write that needs a multixact until a VACUUM completes."
        ),
    ),
    Signal(
        key="postgres_long_transaction",
        adapter="postgres",
        alert="SparkiPostgresLongTransaction",
        title="PostgreSQL oldest open transaction",
        value="sparki_postgres_oldest_transaction_seconds",
        direction="above",
        unit="seconds",
        window_minutes=0,
        labels=("target",),
        summary="A transaction on {{ $labels.target }} has been open for over [threshold]",
        description=(
            "The oldest open transaction on {{ $labels.target }} started [value] ago"
            " (threshold [threshold] for [for]): VACUUM cannot remove rows deleted since,"
            " in any table, and its locks block DDL and everything queued behind it."
        ),
    ),
    Signal(
        key="postgres_idle_in_transaction",
        adapter="postgres",
        alert="SparkiPostgresIdleInTransaction",
        title="PostgreSQL longest idle in transaction",
        value="sparki_postgres_oldest_idle_in_transaction_seconds",
        direction="above",
        unit="seconds",
        window_minutes=0,
        labels=("target",),
        summary="A session on {{ $labels.target }} sits idle in a transaction for over [threshold]",
        description=(
            "A client on {{ $labels.target }} began a transaction and has done nothing in it"
            " for [value] (threshold [threshold] for [for]): usually a leaked pooled"
            " connection. It holds its locks and the xmin horizon until it ends."
        ),
    ),
    Signal(
        key="postgres_archiver_failing",
        adapter="postgres",
        alert="SparkiPostgresArchiverFailing",
        title="PostgreSQL WAL archive failures",
        value=PG_ARCHIVE_FAIL_RATE,
        direction="above",
        unit="per_second",
        window_minutes=15,
        labels=("target",),
        summary="WAL archiving fails on {{ $labels.target }}",
        description=(
            "archive_command (or archive_library) on {{ $labels.target }} fails at [value]"
            " (threshold [threshold] for [for]): point-in-time recovery has a gap from the"
            " first failure, and unarchived WAL piles up in pg_wal until the disk is full."
        ),
    ),
    Signal(
        key="postgres_autovacuum_saturated",
        adapter="postgres",
        alert="SparkiPostgresAutovacuumSaturated",
        title="PostgreSQL autovacuum workers busy / autovacuum_max_workers",
        value=PG_AUTOVACUUM_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target",),
        summary="Every autovacuum worker on {{ $labels.target }} has been busy for [for]",
        description=(
            "[value] of autovacuum_max_workers run on {{ $labels.target }} (threshold"
            " [threshold] for [for]): tables needing vacuum wait in line, dead tuples and"
            " transaction ID age grow meanwhile."
        ),
        symptom=False,
    ),
)


def synth_health(signal: Signal, st: Any) -> Any:
    """promtool input series for the health signals (exporter.generate.promtests helpers)."""
    from ...generate.promtests import Synth, _const, _counter, _gauge

    key = signal.key
    if key in ("postgres_xid_wraparound", "postgres_mxid_wraparound"):
        which = "xid" if key == "postgres_xid_wraparound" else "mxid"
        labels = {"target": "pg-main", "datname": "app"}
        # Whole IDs, as the server reports them: the share PromQL sees is rounded.
        return Synth(
            (
                _gauge(
                    f"sparki_postgres_database_{which}_age",
                    labels,
                    lambda v, m, s: float(round(v * WRAPAROUND_LIMIT)),
                ),
            ),
            labels,
            lambda v: round(v * WRAPAROUND_LIMIT) / WRAPAROUND_LIMIT,
        )
    if key == "postgres_long_transaction":
        labels = {"target": "pg-main"}
        return Synth((_gauge("sparki_postgres_oldest_transaction_seconds", labels),), labels)
    if key == "postgres_idle_in_transaction":
        labels = {"target": "pg-main"}
        return Synth(
            (_gauge("sparki_postgres_oldest_idle_in_transaction_seconds", labels),), labels
        )
    if key == "postgres_archiver_failing":
        labels = {"target": "pg-main"}
        return Synth(
            (
                _counter("sparki_postgres_archiver_failed_total", labels, lambda v, m, s: v * 60),
                _gauge("sparki_postgres_archiver_enabled", labels, _const(1.0)),
            ),
            labels,
            traps=(
                (
                    "a server that does not archive (archive_mode off) is silent",
                    (
                        _counter(
                            "sparki_postgres_archiver_failed_total", labels, lambda v, m, s: 1.0
                        ),
                        _gauge("sparki_postgres_archiver_enabled", labels, _const(0.0)),
                    ),
                ),
            ),
        )
    if key == "postgres_autovacuum_saturated":
        labels = {"target": "pg-main"}

        def busy(v: float) -> int:
            return round(v * 1000)

        return Synth(
            (
                _gauge("sparki_postgres_autovacuum_workers", labels, lambda v, m, s: busy(v)),
                _gauge("sparki_postgres_autovacuum_max_workers", labels, _const(1000.0)),
            ),
            labels,
            lambda v: busy(v) / 1000,
        )
    raise KeyError(f"no test input synthesizer for signal {key}")


def health_rows(b: Any, thresholds: Any) -> None:
    """The health collectors' rows on the PostgreSQL dashboard (a dashboards.Board)."""
    from ...generate.dashboards import Query

    t = '{target=~"$target"}'
    b.row("Transactions and locks")
    b.graph(
        "Oldest open transaction",
        "s",
        "Age of the oldest open transaction of a client backend (0: none). It pins the"
        " xmin horizon: VACUUM cannot clean rows deleted since.",
        [Query(f"sparki_postgres_oldest_transaction_seconds{t}", "{{target}}")],
        signal="postgres_long_transaction",
        width=8,
    )
    b.graph(
        "Longest idle in transaction",
        "s",
        "How long the longest-idle session has sat inside an open transaction (0: none).",
        [Query(f"sparki_postgres_oldest_idle_in_transaction_seconds{t}", "{{target}}")],
        signal="postgres_idle_in_transaction",
        width=8,
    )
    b.graph(
        "Lock waits",
        "short",
        "Backends waiting for a heavyweight lock, and locks awaited by mode.",
        [
            Query(f"sparki_postgres_lock_waiting_backends{t}", "{{target}} waiting backends"),
            Query(
                'sparki_postgres_locks{target=~"$target",state="waiting"} > 0',
                "{{target}} {{mode}}",
            ),
        ],
        width=8,
    )
    b.row("Vacuum and wraparound")
    b.graph(
        "Transaction ID age / 2^31",
        "percentunit",
        "age(datfrozenxid) per database as a share of the wraparound limit; writes stop"
        " near 100 %. autovacuum_freeze_max_age (default 200M, about 9 %) is where"
        " anti-wraparound vacuums start.",
        [Query(f"{PG_XID_WRAP}{t}", "{{target}} {{datname}}")],
        signal="postgres_xid_wraparound",
        width=8,
    )
    b.graph(
        "Multixact ID age / 2^31",
        "percentunit",
        "mxid_age(datminmxid) per database as a share of the wraparound limit.",
        [Query(f"{PG_MXID_WRAP}{t}", "{{target}} {{datname}}")],
        signal="postgres_mxid_wraparound",
        width=8,
    )
    b.graph(
        "Autovacuum workers busy",
        "percentunit",
        "Autovacuum workers running / autovacuum_max_workers.",
        [Query(f"{PG_AUTOVACUUM_UTIL}{t}", "{{target}}")],
        signal="postgres_autovacuum_saturated",
        width=8,
        maximum=1,
    )
    b.graph(
        "Dead tuples (top tables)",
        "short",
        "Dead row versions of the top-N tables by dead tuples (vacuum_top_n); the rest summed"
        " as other.",
        [
            Query(
                f"sparki_postgres_table_dead_tuples{t}",
                "{{target}} {{datname}}.{{schemaname}}.{{relname}}",
            )
        ],
    )
    b.graph(
        "Dead tuple share",
        "percentunit",
        "Dead / (dead + live) of the same tables.",
        [Query(f"{PG_DEAD_RATIO}{t}", "{{target}} {{datname}}.{{schemaname}}.{{relname}}")],
        maximum=1,
    )
    b.row("Checkpoints, WAL and archiving")
    b.graph(
        "Checkpoints",
        "ops",
        "Checkpoints per second, timed (checkpoint_timeout) or requested (max_wal_size,"
        " CHECKPOINT): requested ones dominating means max_wal_size is too small.",
        [
            Query(
                f"rate(sparki_postgres_checkpoints_total{t}[$__rate_interval])",
                "{{target}} {{kind}}",
            )
        ],
        width=8,
    )
    b.graph(
        "WAL written",
        "Bps",
        "WAL bytes generated per second (pg_stat_wal, PostgreSQL 14+).",
        [
            Query(
                f"rate(sparki_postgres_wal_bytes_total{t}[$__rate_interval])",
                "{{target}}",
            )
        ],
        width=8,
    )
    b.graph(
        "WAL archive failures",
        "ops",
        "Failed archive attempts per second over 15 minutes, where archiving is on.",
        [Query(PG_ARCHIVE_FAIL_RATE.replace("_total", f"_total{t}", 1), "{{target}}")],
        signal="postgres_archiver_failing",
        width=8,
    )
    b.row("Sizes")
    b.graph(
        "Database size",
        "bytes",
        "pg_database_size of every non-template database.",
        [Query(f"sparki_postgres_database_size_bytes{t}", "{{target}} {{datname}}")],
        width=24,
    )


# The package's catalog is the sum of its sections (the collectors split from target.py
# come first).
