"""PostgreSQL adapter: pg_stat_statements latency histograms and the pg_stat views.

One long-lived connection per target (the contract allows two; we need one), in
autocommit mode, with ``statement_timeout`` and ``lock_timeout`` set on the session, so
the exporter can neither pile up connections nor queue behind locks.

The statement latency histogram is derived, not sampled: pg_stat_statements keeps
cumulative ``calls`` and ``total_exec_time`` per statement, so between two polls a
statement contributes Δcalls observations at Δtime/Δcalls. A statement's first sight
is only a baseline. Anything that makes the counters jump backwards or start over
(``pg_stat_statements_reset()``, eviction of entries, a new ``stats_reset``) turns the
affected entries back into baselines instead of observations, so resets can never
produce negative, duplicated or huge observations.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, SecretStr, field_validator

from ..adapter import AdapterSpec, PollError, Reason
from ..bucket_edges import require_edges
from ..config import Duration, GlobalConfig, TargetConfig
from ..logs import kv
from ..metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from ._pg_replication import ReplicationHealth, ReplicationWatch, standby_lag_seconds
from ._pg_replication import families as replication_families

log = logging.getLogger("sparki.postgres")

# Bounds in seconds; 0.05 and 0.1 are the platform's warning and critical p95 lines, so
# they must be bucket edges for histogram_quantile to place them exactly.
STATEMENT_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
PROBE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONNECTION_STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)


def _buckets(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if not value or any(not isinstance(v, int | float) or v <= 0 for v in value):
            raise ValueError("must be a non-empty list of positive numbers of seconds")
        if list(value) != sorted(set(value)):
            raise ValueError("must be strictly increasing")
        require_edges(value, "postgres_statement_latency")
    return value


class PostgresConfig(TargetConfig):
    """One PostgreSQL server. ``dsn`` is a libpq URL or key=value string."""

    secret_fields = ("password",)

    dsn: str = "postgresql:///postgres"
    password: SecretStr | None = None
    application_name: str = "sparki-exporter"
    statement_timeout: Duration | None = Field(
        None, description="server-side limit per query; defaults to the poll timeout"
    )
    lock_timeout: Duration = 1.0
    statements_top_n: int = Field(100, ge=0, le=10000)
    exclude_own_statements: bool = Field(
        True,
        description="leave out statements of the exporter's own role, which would "
        "otherwise pull latency percentiles down on a quiet server",
    )
    query_text_length: int = Field(120, ge=16, le=4096)
    query_text_refresh: Duration = Field(
        60.0,
        description="at most one read of query texts per this period after the first: "
        "pg_stat_statements(true) reads the whole texts file, so a churning top-N must "
        "not make every poll pay for it",
    )
    statement_buckets: tuple[float, ...] = STATEMENT_BUCKETS
    expected_standbys: int | None = Field(
        None, ge=0, description="on a primary: standbys that must be streaming from it"
    )

    _check_buckets = field_validator("statement_buckets", mode="before")(_buckets)

    @field_validator("dsn")
    @classmethod
    def _valid_dsn(cls, value: str) -> str:
        try:
            params = conninfo_to_dict(value)
        except psycopg.ProgrammingError:
            # libpq's message can quote the string, which may hold a password: say less.
            raise ValueError("not a valid libpq connection string or postgresql:// URL") from None
        ports = str(params.get("port", "5432")).split(",")
        if not all(p.strip().isdigit() and 0 < int(p) < 65536 for p in ports):
            raise ValueError("the port in the DSN must be a number from 1 to 65535")
        return value

    def extra_secrets(self) -> list[str]:
        password = conninfo_to_dict(self.dsn).get("password")
        return [str(password)] if password else []


def from_env(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """One target from the platform's PG_* variables, if PG_HOST is set."""
    if not env.get("PG_HOST"):
        return []
    params = {
        "host": env["PG_HOST"],
        "port": env.get("PG_PORT", "5432"),
        "user": env.get("PG_USER", "postgres"),
        "dbname": env.get("PG_DATABASE", "postgres"),
    }
    target: dict[str, Any] = {
        "name": env.get("SPARKI_PG_TARGET", "postgres"),
        "dsn": make_conninfo("", **params),
    }
    if env.get("PG_PASSWORD"):
        target["password"] = env["PG_PASSWORD"]
    return [target]


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    datname: str
    xact_commit: int
    xact_rollback: int
    blks_hit: int
    blks_read: int


@dataclass(frozen=True, slots=True)
class StatementSeries:
    datname: str
    queryid: str  # a decimal queryid, or "other"
    calls: int
    seconds: float


@dataclass(frozen=True, slots=True)
class PostgresSnapshot:
    """Everything one poll learned, immutable, ready to be turned into families."""

    target: str
    version: int
    in_recovery: bool
    max_connections: int
    connections: tuple[tuple[str, int], ...]
    databases: tuple[DatabaseStats, ...]
    replication: tuple[tuple[str, float, float], ...]  # replica, seconds, bytes
    probe: HistogramSnapshot
    statements_available: bool
    statement_histograms: tuple[tuple[str, HistogramSnapshot], ...]
    statements: tuple[StatementSeries, ...]
    statement_texts: tuple[tuple[str, str, str], ...]  # datname, queryid, text
    statements_tracked: int
    statements_deallocated: int | None
    replication_health: ReplicationHealth | None = None  # see _pg_replication


# --- version differences, in one place -------------------------------------------------


def statements_sql(version: int, exclude_own: bool = True) -> str:
    """pg_stat_statements without query text, for PostgreSQL 13 to 17.

    13 renamed total_time to total_exec_time; 14 added ``toplevel`` (nested statements
    would count their time twice); 17 added ``stats_since``, which tells exactly when an
    entry was (re)created, so evictions are detected without guessing.
    """
    time_col = "total_exec_time" if version >= 130000 else "total_time"
    since = "s.stats_since" if version >= 170000 else "NULL::timestamptz"
    toplevel = "AND s.toplevel" if version >= 140000 else ""
    own = "AND s.userid <> session_user::regrole::oid" if exclude_own else ""
    # Only constants are interpolated.
    return (
        f"SELECT s.userid::int8, s.dbid::int8, s.queryid, s.calls, s.{time_col}, d.datname, "  # noqa: S608
        f"{since} FROM pg_stat_statements(false) s JOIN pg_database d ON d.oid = s.dbid "
        f"WHERE s.queryid IS NOT NULL {toplevel} {own}"
    )


def statements_info_sql(version: int) -> str | None:
    """pg_stat_statements_info exists from 14 on: eviction count and last full reset."""
    return "SELECT dealloc, stats_reset FROM pg_stat_statements_info" if version >= 140000 else None


SETTINGS_SQL = (
    "SELECT current_setting('server_version_num')::int, pg_is_in_recovery(), "
    "current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int, "
    "coalesce(current_setting('reserved_connections', true), '0')::int, "  # 16+
    # pg_settings hides this row from roles without pg_read_all_settings: NULL = unknown.
    "(SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), "
    "EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'), "
    "current_database()"
)
CONNECTIONS_SQL = (
    "SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' GROUP BY 1"
)
DATABASES_SQL = (
    "SELECT datname, xact_commit, xact_rollback, blks_hit, blks_read "
    "FROM pg_stat_database WHERE datname IS NOT NULL ORDER BY datname"
)
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

_LITERAL = re.compile(r"'(?:[^']|'')*'")
_SPACE = re.compile(r"\s+")


def clean_query_text(text: str, limit: int) -> str:
    """Normalize a statement for a label: one line, no string literals, bounded length.

    pg_stat_statements already replaces constants with $n in normal statements, but
    utility statements (``ALTER ROLE ... PASSWORD '...'``) keep their text verbatim, so
    literals are blanked here: a label must never carry a secret.
    """
    text = _SPACE.sub(" ", _LITERAL.sub("'?'", text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PostgresTarget:
    """Polls one server; keeps the connection and the state deltas are computed from."""

    def __init__(self, config: PostgresConfig, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        self.conn: AsyncConnection[Any] | None = None
        self.probe = HistogramState(PROBE_BUCKETS)
        self.replication_watch = ReplicationWatch(config.expected_standbys)
        self.histograms: dict[str, HistogramState] = {}
        # (userid, dbid, queryid) -> (calls, total ms, stats_since)
        self.previous: dict[tuple[int, int, int], tuple[int, float, Any]] | None = None
        self.previous_reset: Any = None
        self.previous_dealloc: int | None = None
        self.top: dict[tuple[str, int], list[float]] = {}  # (datname, queryid) -> [calls, s]
        self.other: dict[str, list[float]] = {}
        self.texts: dict[tuple[int, int], str] = {}  # (dbid, queryid) -> cleaned text
        self.text_keys: dict[tuple[str, int], tuple[int, int]] = {}  # top-N -> texts key
        # Statements ranked N+1 to 2N: their text is fetched ahead, with the top-N's, so
        # one that climbs into the top N usually has its text already.
        self.text_ahead: set[tuple[int, int]] = set()
        self.last_text_fetch: float | None = None
        self.reported_problem: str | None = None

    # -- connection ---------------------------------------------------------------------

    async def _connection(self) -> AsyncConnection[Any]:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        params: dict[str, Any] = {"connect_timeout": max(2, math.ceil(self.timeout))}
        if "application_name" not in conninfo_to_dict(self.config.dsn):
            params["application_name"] = self.config.application_name
        if self.config.password is not None:
            params["password"] = self.config.password.get_secret_value()
        conn = await AsyncConnection.connect(
            make_conninfo(self.config.dsn, **params), autocommit=True
        )
        statement_ms = int((self.config.statement_timeout or self.timeout) * 1000)
        lock_ms = int(self.config.lock_timeout * 1000)
        try:
            await conn.execute(f"SET statement_timeout = {statement_ms}")
            await conn.execute(f"SET lock_timeout = {lock_ms}")
        except BaseException:
            await conn.close()
            raise
        self.conn = conn
        return conn

    async def reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            await conn.close()

    async def close(self) -> None:
        await self.reset()

    # -- poll ---------------------------------------------------------------------------

    async def poll(self) -> PostgresSnapshot:
        conn = await self._connection()
        start = time.perf_counter()
        await conn.execute("SELECT 1")
        self.probe.observe(time.perf_counter() - start)

        row = await _one(conn, SETTINGS_SQL)
        version, in_recovery, max_conn, su_reserved, reserved, preload, has_ext, dbname = row
        max_connections = int(max_conn) - int(su_reserved) - int(reserved)

        states = dict.fromkeys(CONNECTION_STATES, 0)
        for state, count in await _all(conn, CONNECTIONS_SQL):
            states[str(state)] = int(count)

        databases = tuple(
            DatabaseStats(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]))
            for r in await _all(conn, DATABASES_SQL)
        )
        replication = await self._replication(conn, bool(in_recovery))
        health = await self.replication_watch.poll(conn, bool(in_recovery))
        replication = tuple((r, standby_lag_seconds(health, s), b) for r, s, b in replication)
        available, tracked, dealloc = await self._statements(
            conn, int(version), preload, bool(has_ext), str(dbname)
        )

        statements: list[StatementSeries] = []
        texts: list[tuple[str, str, str]] = []
        if available:
            statements += [
                StatementSeries(d, str(q), int(v[0]), v[1])
                for (d, q), v in sorted(self.top.items())
            ]
            statements += [
                StatementSeries(d, "other", int(v[0]), v[1]) for d, v in sorted(self.other.items())
            ]
            texts += [
                (d, str(q), self.texts[key])
                for (d, q), key in sorted(self.text_keys.items())
                if key in self.texts
            ]
        return PostgresSnapshot(
            target=self.config.name,
            version=int(version),
            in_recovery=bool(in_recovery),
            max_connections=max_connections,
            connections=tuple(sorted(states.items())),
            databases=databases,
            replication=replication,
            probe=self.probe.snapshot(),
            statements_available=available,
            statement_histograms=tuple(
                (d, h.snapshot()) for d, h in sorted(self.histograms.items())
            ),
            statements=tuple(statements),
            statement_texts=tuple(texts),
            statements_tracked=tracked,
            statements_deallocated=dealloc,
            replication_health=health,
        )

    async def _replication(
        self, conn: AsyncConnection[Any], in_recovery: bool
    ) -> tuple[tuple[str, float, float], ...]:
        if in_recovery:
            lag_bytes, lag_seconds = await _one(conn, STANDBY_LAG_SQL)
            return (("self", float(lag_seconds), float(lag_bytes)),)
        rows: list[tuple[str, float, float]] = []
        seen: dict[str, int] = {}
        for name, lag_bytes, lag_seconds in await _all(conn, PRIMARY_LAG_SQL):
            if lag_bytes is None:  # replay_lsn hidden: the role lacks pg_read_all_stats
                continue
            replica = str(name)
            seen[replica] = seen.get(replica, 0) + 1
            if seen[replica] > 1:  # two standbys with one application_name
                replica = f"{replica}#{seen[replica]}"
            lag_bytes = max(0.0, float(lag_bytes))
            seconds = 0.0 if lag_bytes == 0 else max(0.0, float(lag_seconds))
            rows.append((replica, seconds, lag_bytes))
        return tuple(rows)

    def _problem(self, problem: str | None, dbname: str) -> None:
        """Log once per change why pg_stat_statements is unavailable, and how to fix it."""
        if problem == self.reported_problem:
            return
        self.reported_problem = problem
        if problem is None:
            log.info("pg_stat_statements available", extra=kv(target=self.config.name))
            return
        fixes = {
            "not_preloaded": "add pg_stat_statements to shared_preload_libraries in "
            "postgresql.conf and restart PostgreSQL",
            "extension_missing": f"run CREATE EXTENSION pg_stat_statements; in database {dbname}",
            "permission": "GRANT pg_monitor (or pg_read_all_stats) TO the exporter's role",
        }
        log.warning(
            "pg_stat_statements unavailable: statement metrics disabled, the rest continues",
            extra=kv(target=self.config.name, problem=problem, fix=fixes.get(problem, problem)),
        )

    async def _statements(
        self,
        conn: AsyncConnection[Any],
        version: int,
        preload: str | None,
        has_ext: bool,
        dbname: str,
    ) -> tuple[bool, int, int | None]:
        preloaded = preload is None or "pg_stat_statements" in [
            p.strip() for p in preload.split(",")
        ]
        if not preloaded:
            self._problem("not_preloaded", dbname)
            return False, 0, None
        if not has_ext:
            self._problem("extension_missing", dbname)
            return False, 0, None
        try:
            rows = await _all(conn, statements_sql(version, self.config.exclude_own_statements))
            info_sql = statements_info_sql(version)
            dealloc, stats_reset = (await _one(conn, info_sql)) if info_sql else (None, None)
        except psycopg.errors.InsufficientPrivilege:
            self._problem("permission", dbname)
            return False, 0, None
        except psycopg.errors.ObjectNotInPrerequisiteState:
            self._problem("not_preloaded", dbname)
            return False, 0, None
        self._problem(None, dbname)
        self._apply_statements(rows, stats_reset, dealloc)
        await self._fetch_texts(conn)
        return True, len(rows), (int(dealloc) if dealloc is not None else None)

    def _apply_statements(
        self, rows: Iterable[tuple[Any, ...]], stats_reset: Any, dealloc: Any
    ) -> None:
        current: dict[tuple[int, int, int], tuple[int, float, Any]] = {}
        datnames: dict[int, str] = {}
        totals: dict[tuple[str, int], float] = {}
        for userid, dbid, queryid, calls, total_ms, datname, since in rows:
            key = (int(userid), int(dbid), int(queryid))
            current[key] = (int(calls), float(total_ms), since)
            datnames[int(dbid)] = str(datname)
            agg = (str(datname), int(queryid))
            totals[agg] = totals.get(agg, 0.0) + float(total_ms)

        # Top-N by cumulative time; their own series, the rest summed under "other".
        n = self.config.statements_top_n
        ranked = sorted(totals, key=lambda k: (-totals[k], k))[: 2 * n] if n else []
        top = set(ranked[:n])
        ahead = set(ranked[n:])
        self.top = {k: v for k, v in self.top.items() if k in top}
        for k in top:
            self.top.setdefault(k, [0, 0.0])
        self.text_keys = {
            (datnames[dbid], queryid): (dbid, queryid)
            for _, dbid, queryid in current
            if (datnames[dbid], queryid) in top
        }
        self.text_ahead = {
            (dbid, queryid) for _, dbid, queryid in current if (datnames[dbid], queryid) in ahead
        }
        for datname in set(datnames.values()):
            self.histograms.setdefault(datname, HistogramState(self.config.statement_buckets))
            self.other.setdefault(datname, [0, 0.0])

        full_reset = self.previous is None or (
            self.previous_reset is not None and stats_reset != self.previous_reset
        )
        previous = {} if full_reset or self.previous is None else self.previous
        for key, (calls, total_ms, since) in current.items():
            before = previous.get(key)
            if before is None:
                continue  # first sight (or after a full reset): a baseline only
            d_calls = calls - before[0]
            d_ms = total_ms - before[1]
            if since != before[2] or d_calls < 0 or d_ms < 0:
                continue  # entry recreated (reset or evicted): start over from here
            if d_calls == 0:
                continue
            datname = datnames[key[1]]
            seconds = d_ms / 1000.0
            if not self.histograms[datname].observe(seconds / d_calls, d_calls, total=seconds):
                continue
            agg = (datname, key[2])
            bucket = self.top[agg] if agg in self.top else self.other[datname]
            bucket[0] += d_calls
            bucket[1] += seconds
        self.previous = current
        self.previous_reset = stats_reset
        self.previous_dealloc = int(dealloc) if dealloc is not None else None
        live = {(dbid, queryid) for _, dbid, queryid in current}
        self.texts = {k: v for k, v in self.texts.items() if k in live}

    async def _fetch_texts(self, conn: AsyncConnection[Any]) -> None:
        """Fetch text only for newly seen top statements: reading it costs ~20x more.

        PostgreSQL reads the whole texts file for any ``pg_stat_statements(true)``
        call, whatever the WHERE clause, so the cost is per fetch, not per statement.
        Fetches are therefore batched: the statements just below the top N come along,
        and after the first fetch at most one runs per ``query_text_refresh``. A
        statement new to the top N may go without its ``statement_info`` until then;
        its latency and counters are exported from the start.
        """
        missing = set(self.text_keys.values()) - set(self.texts)
        if not missing:
            return
        now = time.monotonic()
        if (
            self.last_text_fetch is not None
            and now - self.last_text_fetch < self.config.query_text_refresh
        ):
            return
        self.last_text_fetch = now
        missing |= self.text_ahead - set(self.texts)
        queryids = sorted({q for _, q in missing})
        rows = await _all(
            conn,
            "SELECT DISTINCT ON (dbid, queryid) dbid::int8, queryid, query "
            "FROM pg_stat_statements(true) WHERE queryid = ANY(%s)",
            (queryids,),
        )
        for dbid, queryid, query in rows:
            if (int(dbid), int(queryid)) in missing and query is not None:
                self.texts[(int(dbid), int(queryid))] = clean_query_text(
                    str(query), self.config.query_text_length
                )


async def _one(conn: AsyncConnection[Any], sql: str, params: Any = None) -> tuple[Any, ...]:
    cur = await conn.execute(sql.encode(), params)
    row = await cur.fetchone()
    if row is None:
        raise PollError(Reason.PROTOCOL, f"no row returned by {sql[:40]}...")
    return tuple(row)


async def _all(conn: AsyncConnection[Any], sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = await conn.execute(sql.encode(), params)
    return [tuple(r) for r in await cur.fetchall()]


# --- snapshot -> families ----------------------------------------------------------------


def families(snap: PostgresSnapshot) -> list[Metric]:
    t = snap.target
    out: list[Metric] = []

    out.append(
        histogram_family(
            "sparki_postgres_statement_duration_seconds",
            "Per-call execution time derived from pg_stat_statements deltas between polls",
            ["target", "datname"],
            (([t, d], h) for d, h in snap.statement_histograms),
        )
    )
    out.append(
        histogram_family(
            "sparki_postgres_probe_duration_seconds",
            "Round trip of a trivial query the exporter issues each poll",
            ["target"],
            [([t], snap.probe)],
        )
    )

    conns = GaugeMetricFamily(
        "sparki_postgres_connections", "Client backends by state", labels=["target", "state"]
    )
    for state, count in snap.connections:
        conns.add_metric([t, state], count)
    out.append(conns)
    maxc = GaugeMetricFamily(
        "sparki_postgres_max_connections",
        "max_connections minus reserved superuser slots",
        labels=["target"],
    )
    maxc.add_metric([t], snap.max_connections)
    out.append(maxc)

    xact = CounterMetricFamily(
        "sparki_postgres_transactions",
        "Transactions by outcome",
        labels=["target", "datname", "outcome"],
    )
    hit = CounterMetricFamily(
        "sparki_postgres_blocks_hit", "Buffer cache hits", labels=["target", "datname"]
    )
    read = CounterMetricFamily(
        "sparki_postgres_blocks_read", "Blocks read from disk", labels=["target", "datname"]
    )
    for db in snap.databases:
        xact.add_metric([t, db.datname, "commit"], db.xact_commit)
        xact.add_metric([t, db.datname, "rollback"], db.xact_rollback)
        hit.add_metric([t, db.datname], db.blks_hit)
        read.add_metric([t, db.datname], db.blks_read)
    out += [xact, hit, read]

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
    for replica, seconds, nbytes in snap.replication:
        lag_s.add_metric([t, replica], seconds)
        lag_b.add_metric([t, replica], nbytes)
    out += [lag_s, lag_b, *replication_families(t, snap.replication_health)]

    calls = CounterMetricFamily(
        "sparki_postgres_statement_calls",
        'Calls of the top-N statements by time since first seen; the rest under queryid="other"',
        labels=["target", "datname", "queryid"],
    )
    secs = CounterMetricFamily(
        "sparki_postgres_statement_seconds",
        "Execution time of the top-N statements since first seen",
        labels=["target", "datname", "queryid"],
    )
    for s in snap.statements:
        calls.add_metric([t, s.datname, s.queryid], s.calls)
        secs.add_metric([t, s.datname, s.queryid], s.seconds)
    info = GaugeMetricFamily(
        "sparki_postgres_statement_info",
        "Normalized, truncated text of the top-N statements; always 1",
        labels=["target", "datname", "queryid", "query"],
    )
    for datname, queryid, text in snap.statement_texts:
        info.add_metric([t, datname, queryid, text], 1)
    out += [calls, secs, info]

    tracked = GaugeMetricFamily(
        "sparki_postgres_statements_tracked",
        "Entries currently in pg_stat_statements",
        labels=["target"],
    )
    tracked.add_metric([t], snap.statements_tracked)
    out.append(tracked)
    if snap.statements_deallocated is not None:
        dealloc = CounterMetricFamily(
            "sparki_postgres_statements_deallocated",
            "Times pg_stat_statements evicted entries; raise pg_stat_statements.max if it grows",
            labels=["target"],
        )
        dealloc.add_metric([t], snap.statements_deallocated)
        out.append(dealloc)

    cap = GaugeMetricFamily(
        "sparki_capability",
        "1 when an optional data source is usable, 0 when it is not "
        "(the log says why and how to fix it)",
        labels=["adapter", "target", "capability"],
    )
    cap.add_metric(["postgres", t, "pg_stat_statements"], 1 if snap.statements_available else 0)
    out.append(cap)

    server = GaugeMetricFamily(
        "sparki_postgres_server_info",
        "Server version and role; always 1",
        labels=["target", "version", "role"],
    )
    server.add_metric(
        [
            t,
            f"{snap.version // 10000}.{snap.version % 10000}",
            "standby" if snap.in_recovery else "primary",
        ],
        1,
    )
    out.append(server)
    return out


def classify(exc: BaseException) -> PollError:
    """Map driver errors to the contract's reasons, with a message free of credentials."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None) or ""
    lowered = text.lower()
    if (
        sqlstate in ("28P01", "28000")
        or "password authentication failed" in lowered
        or "no password supplied" in lowered
        or "authentication failed" in lowered
    ):
        reason = Reason.AUTH
    elif sqlstate == "42501" or sqlstate.startswith("28"):
        reason = Reason.PERMISSION
    elif sqlstate == "57014" or "timeout" in lowered:
        reason = Reason.TIMEOUT
    elif isinstance(exc, psycopg.OperationalError) and not sqlstate:
        reason = Reason.CONNECT
    elif sqlstate.startswith("08"):
        reason = Reason.CONNECT
    elif isinstance(exc, psycopg.DatabaseError | PollError):
        reason = Reason.PROTOCOL
    elif isinstance(exc, OSError):
        reason = Reason.CONNECT
    else:
        reason = Reason.OTHER
    return PollError(reason, text)


ADAPTER = AdapterSpec(
    name="postgres",
    config=PostgresConfig,
    target=PostgresTarget,
    families=families,
    classify=classify,
    from_env=from_env,
    description="PostgreSQL: pg_stat_statements latency, connections, transactions, replication",
)
