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

import importlib
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, SecretStr, field_validator

from ... import collector as collectors
from ...adapter import PollError, Reason
from ...bucket_edges import require_edges
from ...config import Duration, GlobalConfig, TargetConfig, at_most
from ...logs import kv
from ...metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from .catalog import COLLECTORS
from .errors import check_dsn_options, clean_message
from .estimator import interval_moments, spread
from .replication import OWN_SQL as REPLICATION_SQL
from .replication import ReplicationHealth, ReplicationWatch, standby_lag_seconds
from .replication import families as replication_families

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


# statement_timeout and lock_timeout are ints of milliseconds on the server: longer
# than INT_MAX ms (about 24.8 days) is refused by every SET, so by check-config too.
PG_MAX_TIMEOUT_MS = 2_147_483_647
PgTimeout = Annotated[
    Duration, at_most(PG_MAX_TIMEOUT_MS / 1000, "PostgreSQL's maximum, INT_MAX ms")
]


class PostgresConfig(TargetConfig):
    """One PostgreSQL server. ``dsn`` is a libpq URL or key=value string."""

    secret_fields = ("password",)
    known_collectors = tuple(c.name for c in COLLECTORS)

    dsn: str = "postgresql:///postgres"
    password: SecretStr | None = None
    application_name: str = "sparki-exporter"
    statement_timeout: PgTimeout | None = Field(
        None, description="server-side limit per query; defaults to the poll timeout"
    )
    lock_timeout: PgTimeout = 1.0
    statements_top_n: int = Field(100, ge=0, le=10000)
    exclude_own_statements: bool = Field(
        True,
        description="leave out the exporter's own statements (recognized by queryid, "
        "whatever role it shares), which would otherwise pull latency percentiles down "
        "on a quiet server",
    )
    exclude_own_role: bool = Field(
        False,
        description="also leave out every statement of the exporter's role: only for a "
        "role used by nothing else, as it hides an application sharing the role",
    )
    statements_minmax_reset: bool = Field(
        False,
        description="PostgreSQL 17+: after each read, reset every entry's min/max "
        "(pg_stat_statements_reset(0, 0, 0, true)) so they bound one poll interval, "
        "which sharpens the latency estimate. Off by default: it changes the min/max "
        "that other users of pg_stat_statements see, and needs EXECUTE on "
        "pg_stat_statements_reset (superuser only by default)",
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
        check_dsn_options(params)
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
    # reason -> entries left out: "own" (the exporter's statements), "role" (the
    # exclude_own_role option), "privilege" (other roles' rows hidden from this role).
    statements_hidden: tuple[tuple[str, int], ...] = ()
    replication_health: ReplicationHealth | None = None  # see _pg_replication
    # The collectors' parts, (name, part) in catalog order, and how each did.
    parts: tuple[tuple[str, Any], ...] = ()
    collector_runs: tuple[collectors.CollectorRun, ...] = ()


# --- version differences, in one place -------------------------------------------------


def statements_sql(version: int) -> str:
    """pg_stat_statements without query text, for PostgreSQL 12 to 18.

    13 renamed total_time, stddev_time, min_time and max_time to ``*_exec_time``; 14
    added ``toplevel`` (nested statements would count their time twice); 17 added
    ``stats_since``, which tells exactly when an entry was (re)created, so evictions are
    detected without guessing. (1.11/1.12 in 17/18 renamed blk_* timing columns and
    added parallel-worker and WAL columns, none of which are read here.) Rows whose
    ``queryid`` is NULL are other roles' statements hidden from a role without
    ``pg_read_all_stats``: they are returned so they can be counted as hidden.
    """
    col = "exec_time" if version >= 130000 else "time"
    since = "s.stats_since" if version >= 170000 else "NULL::timestamptz"
    toplevel = "WHERE s.toplevel" if version >= 140000 else ""
    # Only constants are interpolated.
    return (
        "SELECT s.userid::int8, s.dbid::int8, s.queryid, s.calls, "  # noqa: S608
        f"s.total_{col}, s.stddev_{col}, s.min_{col}, s.max_{col}, d.datname, {since} "
        f"FROM pg_stat_statements(false) s JOIN pg_database d ON d.oid = s.dbid {toplevel}"
    )


def statements_info_sql(version: int) -> str | None:
    """pg_stat_statements_info exists from 14 on: eviction count and last full reset."""
    return "SELECT dealloc, stats_reset FROM pg_stat_statements_info" if version >= 140000 else None


# The probe: trivial, and of a shape applications rarely use (a pool's health check is
# usually ``SELECT 1``), since the exporter's own statements are left out by queryid.
PROBE_SQL = "SELECT pg_backend_pid()"
# Session limits as a SELECT, not SET: one queryid whatever the values, so it can be
# recognized as the exporter's own like every other statement it runs.
SESSION_SQL = (
    "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)"
)
IDENTITY_SQL = (
    "SELECT session_user::regrole::oid::int8, "
    "(SELECT oid FROM pg_database WHERE datname = current_database())::int8, "
    "current_setting('server_version_num')::int"
)
TEXTS_SQL = (
    "SELECT DISTINCT ON (dbid, queryid) dbid::int8, queryid, query "
    "FROM pg_stat_statements(true) WHERE queryid = ANY(%s)"
)
EXPLAIN_PREFIX = "EXPLAIN (VERBOSE, FORMAT JSON) "
# The EXPLAINs that learn the exporter's queryids are utility statements pg_stat_statements
# records too: found by their text once per connection, so they are left out as well.
OWN_EXPLAINS_SQL = (
    "SELECT queryid FROM pg_stat_statements(true) "
    "WHERE userid::int8 = %s::int8 AND dbid::int8 = %s::int8 AND starts_with(query, %s)"
)
MINMAX_RESET_SQL = "SELECT pg_stat_statements_reset(0, 0, 0, true)"
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
# A role without pg_read_all_stats sees other roles' sessions with backend_type and
# state NULL: those with a database and a user are sessions (background processes have
# neither), counted as state="unknown" rather than dropped.
CONNECTIONS_SQL = (
    "SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' "
    "OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL) GROUP BY 1"
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

# Every literal form PostgreSQL accepts: '...' with any prefix (E'' with backslash
# escapes, U&'', B'', X'', N''), and $tag$...$tag$ with any tag ($1 is a parameter, not
# a quote: a tag cannot start with a digit). An unterminated literal runs to the end.
# Comments are dropped too (they can hold anything). Quoted identifiers are matched
# only to be kept whole, so a quote inside one does not start a literal.
_LITERAL = re.compile(
    r"""(?isx)
    (?P<ident>"(?:[^"]|"")*"?)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|$))
    | (?<![\w$])E'(?:[^'\\]|\\.|'')*(?:'|$)              # E'...': backslash escapes
    | (?<![\w$])(?:U&|[BXN])?'(?:[^']|'')*(?:'|$)      # '...', U&'...', B'', X'', N''
    | (?<![\w$])\$(?P<tag>[A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$.*?(?:\$(?P=tag)\$|$)
    """
)


def _blank(match: re.Match[str]) -> str:
    if match.group("ident"):
        return match.group("ident")
    return " " if match.group("comment") else "'?'"


_SPACE = re.compile(r"\s+")
# Utility statements that set a password are shown as a placeholder whatever their
# syntax: a password written as something the literal scan does not expect must not
# reach a label.
_PASSWORD_STATEMENT = re.compile(
    r"(?is)(?:^|;)\s*(CREATE|ALTER)\s+(ROLE|USER|GROUP)\b[^;]*\bPASSWORD\b"
)
PASSWORD_PLACEHOLDER = "{verb} ROLE ... PASSWORD <hidden>"  # noqa: S105


def clean_query_text(text: str, limit: int) -> str:
    """Normalize a statement for a label: one line, no literals, bounded length.

    pg_stat_statements replaces constants with $n in planned statements, but utility
    statements (``ALTER ROLE ... PASSWORD $$...$$``) keep their text verbatim, so every
    literal form is blanked here and password-setting statements become a fixed
    placeholder: a label must never carry a secret.
    """
    text = _SPACE.sub(" ", _LITERAL.sub(_blank, text)).strip()
    match = _PASSWORD_STATEMENT.search(text)
    if match:
        return PASSWORD_PLACEHOLDER.format(verb=match.group(1).upper())
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
        # (userid, dbid, queryid) -> (calls, total ms, stddev ms, stats_since)
        self.previous: dict[tuple[int, int, int], tuple[int, float, float, Any]] | None = None
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
        # The exporter's own statements: (userid, dbid) of its session and the queryids
        # of the SQL it runs there, learned with EXPLAIN (VERBOSE) on each connection.
        self.own_user: int | None = None
        self.own_db: int | None = None
        self.own_queryids: set[int] = set()
        self.own_recognizable = False  # EXPLAIN shows query identifiers
        self.own_retry = True  # some SQL could not be explained yet (no extension)
        self.reported_hidden: dict[str, int] = {}
        self.hidden: dict[str, int] = {}
        self.privilege_hidden_before = False
        self.minmax_refused = False
        # Minimal wiring of the collector modules (pgcov); the pg branch's split of this
        # file into collectors replaces it.
        names = collectors.enabled(
            COLLECTORS, global_config.collectors_for("postgres"), config.collectors
        )
        self.collectors = [
            (spec.name, importlib.import_module(f"{__package__}.{spec.name}"))
            for spec in COLLECTORS
            if spec.name in names
        ]
        self.collector_objects = [(name, mod.Collector(config)) for name, mod in self.collectors]
        self.collector_errors = collectors.CollectorErrors("postgres", config.name)

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
        # At least 1 ms (0 would mean no limit), at most the server's maximum (a poll
        # timeout longer than that leaves the statements unlimited in practice anyway).
        statement_s = self.config.statement_timeout or self.timeout
        statement_ms = min(max(1, round(statement_s * 1000)), PG_MAX_TIMEOUT_MS)
        lock_ms = min(max(1, round(self.config.lock_timeout * 1000)), PG_MAX_TIMEOUT_MS)
        try:
            await conn.execute(SESSION_SQL.encode(), (str(statement_ms), str(lock_ms)))
            await self._learn_own_statements(conn)
        except BaseException:
            await conn.close()
            raise
        self.conn = conn
        return conn

    def _own_sql(self, version: int) -> list[tuple[str, Any]]:
        sql: list[tuple[str, Any]] = [
            (PROBE_SQL, None),
            (SESSION_SQL, ("0", "0")),
            (IDENTITY_SQL, None),
            (SETTINGS_SQL, None),
            (CONNECTIONS_SQL, None),
            (DATABASES_SQL, None),
            (PRIMARY_LAG_SQL, None),
            (STANDBY_LAG_SQL, None),
            (statements_sql(version), None),
            (TEXTS_SQL, ([0],)),
            (OWN_EXPLAINS_SQL, (0, 0, "")),
            *((sql, None) for sql in REPLICATION_SQL),
        ]
        for _, mod in self.collectors:
            own = mod.own_sql(version) if hasattr(mod, "own_sql") else mod.OWN_SQL
            sql += [(text, None) for text in own]
        info = statements_info_sql(version)
        if info:
            sql.append((info, None))
        if version >= 170000 and self.config.statements_minmax_reset:
            sql.append((MINMAX_RESET_SQL, None))
        return sql

    async def _learn_own_statements(self, conn: AsyncConnection[Any]) -> None:
        """Learn the queryids of the exporter's own SQL, so exactly those are left out.

        ``EXPLAIN (VERBOSE)`` prints the query identifier PostgreSQL (14+, with
        ``compute_query_id`` on or ``auto`` and pg_stat_statements loaded) will record
        for the statement, without running it. Keyed by the session's role and
        database, so an application sharing the role keeps all of its statements, and
        an application running the very same SQL under another role keeps it too. The
        EXPLAINs themselves are recorded by pg_stat_statements as utility statements:
        found by their text right after, once per connection.
        """
        user, db, version = await _one(conn, IDENTITY_SQL)
        self.own_user, self.own_db = int(user), int(db)
        ids: set[int] = set()
        recognizable, retry = True, False
        for sql, params in self._own_sql(int(version)):
            try:
                cur = await conn.execute((EXPLAIN_PREFIX + sql).encode(), params)
                row = await cur.fetchone()
            except psycopg.errors.QueryCanceled:
                raise
            except psycopg.DatabaseError:
                retry = True  # pg_stat_statements not created yet: learn it later
                continue
            plan = row[0] if row else None
            queryid = plan[0].get("Query Identifier") if isinstance(plan, list) and plan else None
            if queryid is None:
                recognizable = False  # compute_query_id off, or PostgreSQL before 14
            else:
                ids.add(int(queryid))
        if recognizable and not retry:
            try:
                rows = await _all(conn, OWN_EXPLAINS_SQL, (user, db, EXPLAIN_PREFIX))
            except psycopg.errors.QueryCanceled:
                raise
            except psycopg.DatabaseError:
                rows = []
            ids |= {int(r[0]) for r in rows if r[0] is not None}
        self.own_queryids = ids
        self.own_recognizable = recognizable and bool(ids)
        self.own_retry = retry

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
        await conn.execute(PROBE_SQL.encode())
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
        steps = [
            (name, lambda c=c: c.collect(conn, int(version))) for name, c in self.collector_objects
        ]
        parts, runs = await collectors.run(steps, _collector_fatal, clean_message)
        self.collector_errors.report(runs)
        return PostgresSnapshot(
            parts=tuple(parts.items()),
            collector_runs=runs,
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
            statements_hidden=tuple(sorted(self.hidden.items())) if available else (),
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
        if self.own_retry and self.config.exclude_own_statements:
            await self._learn_own_statements(conn)  # the extension appeared since
        try:
            # pg_stat_statements_info is read before and after the rows: a reset in
            # between would leave rows and stats_reset from different sides of it.
            info_sql = statements_info_sql(version)
            _, reset_before = (await _one(conn, info_sql)) if info_sql else (None, None)
            rows = await _all(conn, statements_sql(version))
            dealloc, stats_reset = (await _one(conn, info_sql)) if info_sql else (None, None)
        except psycopg.errors.InsufficientPrivilege:
            self._problem("permission", dbname)
            return False, 0, None
        except psycopg.errors.ObjectNotInPrerequisiteState:
            self._problem("not_preloaded", dbname)
            return False, 0, None
        self._problem(None, dbname)
        if reset_before != stats_reset:
            # Reset during the read: skip this poll's rows. The next one sees the new
            # stats_reset against the last complete poll and counts from zero.
            return True, len(rows), (int(dealloc) if dealloc is not None else None)
        self._apply_statements(rows, stats_reset, dealloc)
        self._report_hidden()
        if self.config.statements_minmax_reset and version >= 170000 and not self.minmax_refused:
            try:
                await conn.execute(MINMAX_RESET_SQL.encode())
            except psycopg.errors.InsufficientPrivilege:
                self.minmax_refused = True
                log.warning(
                    "statements_minmax_reset is on but the role may not reset "
                    "pg_stat_statements: min/max stay cumulative",
                    extra=kv(
                        target=self.config.name,
                        fix="GRANT EXECUTE ON FUNCTION pg_stat_statements_reset(oid, oid, "
                        "bigint, boolean) TO the exporter's role, or turn the option off",
                    ),
                )
        await self._fetch_texts(conn)
        return True, len(rows), (int(dealloc) if dealloc is not None else None)

    def _report_hidden(self) -> None:
        """One log line when a reason for hiding statements appears (or goes away)."""
        fixes = {
            "own": "nothing to do: these are the exporter's own queries",
            "role": "exclude_own_role is on: every statement of the exporter's role is "
            "left out; give the exporter a role of its own, or turn the option off",
            "privilege": "GRANT pg_monitor (or pg_read_all_stats) TO the exporter's role: "
            "other roles' statements are hidden from it, so latency alerts cannot see them",
            "unrecognized": "the exporter cannot tell its own statements apart "
            "(PostgreSQL before 14, or compute_query_id = off): they are left out by "
            "role; give the exporter a role of its own",
        }
        for reason in sorted(set(self.hidden) | set(self.reported_hidden)):
            now = self.hidden.get(reason, 0) > 0
            if now == (self.reported_hidden.get(reason, 0) > 0):
                continue
            self.reported_hidden[reason] = self.hidden.get(reason, 0)
            if not now:
                log.info(
                    "pg_stat_statements rows no longer hidden",
                    extra=kv(target=self.config.name, reason=reason),
                )
            elif reason == "own":
                log.info(
                    "left the exporter's own statements out of the latency histograms",
                    extra=kv(
                        target=self.config.name, reason=reason, statements=self.hidden[reason]
                    ),
                )
            else:
                log.warning(
                    "pg_stat_statements rows hidden: they are not in the latency histograms",
                    extra=kv(
                        target=self.config.name,
                        reason=reason,
                        statements=self.hidden[reason],
                        fix=fixes[reason],
                    ),
                )

    def _apply_statements(
        self, rows: Iterable[tuple[Any, ...]], stats_reset: Any, dealloc: Any
    ) -> None:
        current: dict[tuple[int, int, int], tuple[int, float, float, Any]] = {}
        bounds: dict[tuple[int, int, int], tuple[float, float]] = {}
        datnames: dict[int, str] = {}
        totals: dict[tuple[str, int], float] = {}
        hidden = {"own": 0, "role": 0, "privilege": 0, "unrecognized": 0}
        own_known = self.own_recognizable
        for userid, dbid, queryid, calls, total_ms, sd_ms, min_ms, max_ms, datname, since in rows:
            if queryid is None:
                hidden["privilege"] += 1  # another role's row, hidden from this role
                continue
            mine = int(userid) == self.own_user
            if mine and self.config.exclude_own_statements:
                if own_known:
                    if int(dbid) == self.own_db and int(queryid) in self.own_queryids:
                        hidden["own"] += 1
                        continue
                else:
                    hidden["unrecognized"] += 1
                    continue
            if mine and self.config.exclude_own_role:
                hidden["role"] += 1
                continue
            key = (int(userid), int(dbid), int(queryid))
            current[key] = (int(calls), float(total_ms), float(sd_ms or 0.0), since)
            bounds[key] = (float(min_ms or 0.0), float(max_ms or 0.0))
            datnames[int(dbid)] = str(datname)
            agg = (str(datname), int(queryid))
            totals[agg] = totals.get(agg, 0.0) + float(total_ms)
        self.hidden = {k: v for k, v in hidden.items() if v}

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

        # Only the exporter's first poll is a baseline. After that, an entry absent from
        # the previous complete poll is new (first call, or re-created after a reset or
        # an eviction): every call it shows happened since, so all of them count. The
        # exception: rows that were hidden by privilege and are visible now (a GRANT)
        # carry their whole history, so they start as baselines.
        first_poll = self.previous is None
        full_reset = (
            not first_poll
            and self.previous_reset is not None
            and stats_reset != self.previous_reset
        )
        previous = {} if full_reset or self.previous is None else self.previous
        # A role without pg_read_all_stats that was granted it: hidden rows went to none.
        new_counts = not (self.privilege_hidden_before and not hidden["privilege"])
        zero = (0, 0.0, 0.0, None)
        for key, (calls, total_ms, sd_ms, since) in current.items():
            if first_poll:
                break
            before = previous.get(key)
            if before is None:
                if not new_counts and not full_reset:
                    continue
                before = zero
            elif since != before[3] or calls < before[0] or total_ms < before[1]:
                # Re-created since the previous poll (per-entry reset, eviction): its
                # counters are all from after that, as for a new entry.
                before = zero
            d_calls, d_ms, d_squares = interval_moments(
                calls, total_ms, sd_ms, (before[0], before[1], before[2])
            )
            if d_calls <= 0 or d_ms < 0:
                continue
            datname = datnames[key[1]]
            seconds = d_ms / 1000.0
            low, high = bounds[key]
            counts = spread(
                d_calls,
                seconds,
                max(d_squares, 0.0) / 1e6,
                low / 1000.0,
                high / 1000.0,
                self.config.statement_buckets,
            )
            if not self.histograms[datname].add_counts(counts, seconds):
                continue
            agg = (datname, key[2])
            bucket = self.top[agg] if agg in self.top else self.other[datname]
            bucket[0] += d_calls
            bucket[1] += seconds
        self.previous = current
        self.previous_reset = stats_reset
        self.previous_dealloc = int(dealloc) if dealloc is not None else None
        self.privilege_hidden_before = hidden["privilege"] > 0
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
        rows = await _all(conn, TEXTS_SQL, (queryids,))
        for dbid, queryid, query in rows:
            if (int(dbid), int(queryid)) in missing and query is not None:
                self.texts[(int(dbid), int(queryid))] = clean_query_text(
                    str(query), self.config.query_text_length
                )


def _collector_fatal(exc: BaseException) -> bool:
    """A lost connection or the poll deadline fails the poll; anything else one collector."""
    # OperationalError covers a dropped connection and QueryCanceled (statement_timeout).
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | TimeoutError)


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
    # Rows hidden by privilege make the histograms partial: the capability says so.
    complete = snap.statements_available and not dict(snap.statements_hidden).get("privilege")
    cap.add_metric(["postgres", t, "pg_stat_statements"], 1 if complete else 0)
    out.append(cap)
    hidden = GaugeMetricFamily(
        "sparki_postgres_statements_hidden",
        "pg_stat_statements entries left out of the statement metrics, by reason: own "
        "(the exporter's queries), role (exclude_own_role), privilege (other roles' rows "
        "hidden without pg_read_all_stats), unrecognized (own statements left out by role)",
        labels=["target", "reason"],
    )
    if snap.statements_available:
        counts = dict(snap.statements_hidden)
        for reason in ("own", "role", "privilege", "unrecognized"):
            hidden.add_metric([t, reason], counts.get(reason, 0))
    out.append(hidden)

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
    for name, part in snap.parts:
        module = importlib.import_module(f"{__package__}.{name}")
        out += module.families(part, t)
    out += collectors.families("postgres", t, snap.collector_runs)
    return out
