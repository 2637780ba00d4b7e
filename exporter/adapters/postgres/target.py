"""The PostgreSQL target: one connection, its session limits, and the poll.

One long-lived connection per target (the contract allows two; we need one), in
autocommit mode, with ``statement_timeout`` and ``lock_timeout`` set on the session, so
the exporter can neither pile up connections nor queue behind locks.

Each poll runs the probe (the liveness check: its failure fails the poll), then the
enabled collectors (one module each in this package, named as in
``catalog.COLLECTORS``) on that connection, under the poll deadline the core enforces:
those that run fixed queries together in one pipelined round trip (batch.py), then the
others one after another. A collector's own query error (a missing privilege, a view an old
server lacks, its statement cancelled by ``statement_timeout`` or ``lock_timeout``)
degrades that collector alone; a lost connection fails the poll, since every other
collector would fail the same way.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ... import collector
from ...collector import CollectorErrors, CollectorRun
from ...config import GlobalConfig
from ...metrics import (
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from . import batch, own
from .batch import QueryCollector, run_batch
from .catalog import COLLECTORS
from .config import PG_MAX_TIMEOUT_MS, PostgresConfig, from_env
from .queries import RECOVERY_SQL, in_recovery

__all__ = ["PostgresConfig", "PostgresSnapshot", "PostgresTarget", "families", "from_env"]

log = logging.getLogger("sparki.postgres")

PROBE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# The probe: trivial, and of a shape applications rarely use (a pool's health check is
# usually ``SELECT 1``), since the exporter's own statements are left out by queryid.
PROBE_SQL = "SELECT pg_backend_pid()"
# Session limits as a SELECT, not SET: one queryid whatever the values, so it can be
# recognized as the exporter's own like every other statement it runs.
SESSION_SQL = (
    "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)"
)


def collector_module(name: str) -> ModuleType:
    """The module of one collector of this adapter (``exporter.adapters.postgres.<name>``)."""
    return importlib.import_module(f"{__package__}.{name}")


def module_sql(module: ModuleType, config: PostgresConfig, version: int) -> list[tuple[str, Any]]:
    """The statements a collector module runs: ``own_sql(config, version)`` where the SQL
    depends on the version or the config, else its ``OWN_SQL`` (texts, or (text, example
    parameters) pairs)."""
    fn = getattr(module, "own_sql", None)
    entries = fn(config, version) if fn is not None else getattr(module, "OWN_SQL", ())
    return [(entry, None) if isinstance(entry, str) else (entry[0], entry[1]) for entry in entries]


@dataclass(frozen=True, slots=True)
class PostgresSnapshot:
    """Everything one poll learned, immutable, ready to be turned into families."""

    target: str
    version: int
    in_recovery: bool
    probe: HistogramSnapshot
    parts: tuple[tuple[str, Any], ...]  # (collector name, its part), in run order
    runs: tuple[CollectorRun, ...]

    def part(self, name: str) -> Any:
        """One collector's part, None when it is off or failed this poll."""
        return dict(self.parts).get(name)


class PostgresTarget:
    """Polls one server; keeps the connection and the collectors (with their state)."""

    def __init__(self, config: PostgresConfig, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        self.conn: AsyncConnection[Any] | None = None
        self.probe = HistogramState(PROBE_BUCKETS)
        names = collector.enabled(
            COLLECTORS, global_config.collectors_for("postgres"), config.collectors
        )
        # In catalog order: the order they run in, and their families are rendered in.
        self.modules = {s.name: collector_module(s.name) for s in COLLECTORS if s.name in names}
        self.collectors = {name: m.Collector(config) for name, m in self.modules.items()}
        self.own = own.OwnStatements(self._own_sql)
        for c in self.collectors.values():
            if hasattr(c, "own"):
                c.own = self.own  # the statements collector leaves these out
        self.errors = CollectorErrors("postgres", config.name)
        # Batchable collectors whose query failed in the batch: they run alone until
        # they succeed, so a missing privilege does not abort the batch every poll.
        self.alone: set[str] = set()

    # -- connection ---------------------------------------------------------------------

    async def _connection(self) -> AsyncConnection[Any]:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        params: dict[str, Any] = {"connect_timeout": max(2, math.ceil(self.timeout))}
        if "application_name" not in conninfo_to_dict(self.config.dsn):
            params["application_name"] = self.config.application_name
        if self.config.password is not None:
            params["password"] = self.config.password.get_secret_value()
        # prepare_threshold=0: every statement is prepared on its first run (batch.py
        # says why: cheaper polls, and pipelines that psycopg keeps track of correctly).
        conn = await AsyncConnection.connect(
            make_conninfo(self.config.dsn, **params), autocommit=True, prepare_threshold=0
        )
        # At least 1 ms (0 would mean no limit), at most the server's maximum (a poll
        # timeout longer than that leaves the statements unlimited in practice anyway).
        statement_s = self.config.statement_timeout or self.timeout
        statement_ms = min(max(1, round(statement_s * 1000)), PG_MAX_TIMEOUT_MS)
        lock_ms = min(max(1, round(self.config.lock_timeout * 1000)), PG_MAX_TIMEOUT_MS)
        try:
            await conn.execute(SESSION_SQL.encode(), (str(statement_ms), str(lock_ms)))
            if "statements" in self.collectors:
                await self.own.learn(conn)
        except BaseException:
            await conn.close()
            raise
        self.conn = conn
        return conn

    def _own_sql(self, version: int) -> list[tuple[str, Any]]:
        """Every statement this target runs: its own and its enabled collectors'."""
        sql: list[tuple[str, Any]] = [
            (PROBE_SQL, None),
            (SESSION_SQL, ("0", "0")),
            (RECOVERY_SQL, None),
            *own.OWN_SQL,
        ]
        for module in self.modules.values():
            sql += module_sql(module, self.config, version)
        return sql

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
        # Both known to libpq on 14+ (server_version_num at start-up, in_hot_standby
        # reported): no round trip for them.
        version = int(conn.info.server_version)
        standby = await in_recovery(conn)

        def fatal(exc: BaseException) -> bool:
            # The connection is gone (or unusable): every collector would fail alike.
            return conn.closed or conn.broken or isinstance(exc, psycopg.InterfaceError)

        parts, runs = await self._run_batch(conn, version, standby, fatal)
        steps = [
            (name, _step(c, conn, version))
            for name, c in self.collectors.items()
            if name not in parts and name not in runs
        ]
        alone_parts, alone_runs = await collector.run(steps, fatal, describe)
        parts.update(alone_parts)
        for run_ in alone_runs:
            runs[run_.name] = run_
            if run_.ok:
                self.alone.discard(run_.name)  # back into the batch next poll
        ordered = tuple(runs[name] for name in self.collectors if name in runs)
        self.errors.report(ordered)
        return PostgresSnapshot(
            target=self.config.name,
            version=version,
            in_recovery=standby,
            probe=self.probe.snapshot(),
            parts=tuple((name, parts[name]) for name in self.collectors if name in parts),
            runs=ordered,
        )

    async def _run_batch(
        self,
        conn: AsyncConnection[Any],
        version: int,
        standby: bool,
        fatal: collector.Fatal,
    ) -> tuple[dict[str, Any], dict[str, CollectorRun]]:
        """The batchable collectors' queries in one round trip (batch.py says how a
        failure stays with its collector); what is left is run alone by the caller."""
        batched = [
            (name, c)
            for name, c in self.collectors.items()
            if isinstance(c, QueryCollector) and name not in self.alone
        ]
        parts: dict[str, Any] = {}
        runs: dict[str, CollectorRun] = {}
        if len(batched) < 2 or not batch.PIPELINE:
            return parts, runs
        start = time.perf_counter()
        outcome = await run_batch(conn, [(n, c.queries(version, standby)) for n, c in batched])
        # Collectors that shared the round trip each report it whole, plus their parsing.
        shared = time.perf_counter() - start
        if outcome.error is not None and fatal(outcome.error):
            raise outcome.error
        for name, c in batched:
            if name == outcome.failed and outcome.error is not None:
                runs[name] = collector.failed_run(name, shared, outcome.error, describe)
                self.alone.add(name)  # alone until it succeeds: it must not abort the rest
            elif name in outcome.done:
                begin = time.perf_counter()
                try:
                    parts[name] = c.parse(outcome.done[name], version, standby)
                except Exception as exc:  # an odd reply fails this collector only
                    took = shared + time.perf_counter() - begin
                    runs[name] = collector.failed_run(name, took, exc, describe)
                else:
                    runs[name] = CollectorRun(name, True, shared + time.perf_counter() - begin)
        return parts, runs


def _step(c: Any, conn: AsyncConnection[Any], version: int) -> Any:
    async def step() -> Any:
        return await c.collect(conn, version)

    return step


def describe(exc: BaseException) -> str:
    """A collector's failure in a log line: the SQLSTATE's name and the server's message
    (which names the view or privilege), never the connection string."""
    if isinstance(exc, psycopg.Error):
        diag = exc.diag
        state = exc.sqlstate or ""
        message = (diag.message_primary or str(exc)).strip()
        return f"{type(exc).__name__} ({state}): {message}" if state else message
    return f"{type(exc).__name__}: {exc}"


# --- snapshot -> families ----------------------------------------------------------------


def families(snap: PostgresSnapshot) -> list[Metric]:
    t = snap.target
    out: list[Metric] = [
        histogram_family(
            "sparki_postgres_probe_duration_seconds",
            "Round trip of a trivial query the exporter issues each poll",
            ["target"],
            [([t], snap.probe)],
        )
    ]
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
        out += collector_module(name).families(part, t)
    out += collector.families("postgres", t, snap.runs)
    return out
