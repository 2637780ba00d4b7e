"""MySQL/MariaDB target: one connection, one poll running the enabled collectors.

One long-lived connection per target in autocommit mode, with a server-side limit on
every statement (MariaDB's ``max_statement_time``, MySQL's ``max_execution_time``) set
to the poll timeout, so a slow performance_schema read can neither pile up nor outlive
the poll. Each poll reads a round trip probe, a few variables and SHOW GLOBAL STATUS
(shared by most collectors), then runs the enabled collectors one after another: a
collector that fails on its own (a missing privilege) degrades alone, a lost
connection fails the poll and the next one reconnects.
"""

from __future__ import annotations

import importlib
import math
import ssl
import time
from dataclasses import dataclass
from typing import Any

import asyncmy

from ...collector import CollectorErrors, CollectorRun, enabled, run
from ...collector import families as collector_families
from ...config import GlobalConfig
from ...metrics import (
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from .catalog import COLLECTORS
from .config import MysqlConfig
from .context import Context, fetch
from .errors import classify, connection_lost

PROBE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROBE_SQL = "SELECT 1 AS sparki_exporter"
VARIABLES_SQL = (
    "SELECT @@version AS sparki_exporter, @@max_connections, @@performance_schema, "
    "@@version_comment"
)
STATUS_SQL = "SHOW GLOBAL STATUS"


@dataclass(frozen=True, slots=True)
class MysqlSnapshot:
    """Everything one poll learned, immutable, ready to be turned into families."""

    target: str
    version: str
    flavor: str  # mariadb or mysql
    probe: HistogramSnapshot
    parts: tuple[tuple[str, Any], ...]
    runs: tuple[CollectorRun, ...]
    statements_enabled: bool


def tls_context(config: MysqlConfig) -> ssl.SSLContext | None:
    """The client's TLS context, or None for a plain connection."""
    if not config.uses_tls:
        return None
    ctx = ssl.create_default_context(cafile=config.tls_ca_file)
    if config.tls_insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.tls_cert_file and config.tls_key_file:
        ctx.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    return ctx


def describe(exc: BaseException) -> str:
    """A collector's failure as one safe line (no address, no credential)."""
    return classify(exc).message


class MysqlTarget:
    """Polls one server; keeps the connection and each collector's state."""

    def __init__(self, config: MysqlConfig, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        self.conn: Any = None
        self.mariadb = False
        self.probe = HistogramState(PROBE_BUCKETS)
        names = enabled(COLLECTORS, global_config.collectors_for("mysql"), config.collectors)
        self.collectors: list[tuple[str, Any, Any]] = []
        for spec in COLLECTORS:
            if spec.name in names:
                module = importlib.import_module(f"{__package__}.{spec.name}")
                self.collectors.append((spec.name, module, module.Collector(config)))
        self.errors = CollectorErrors("mysql", config.name)

    async def _connection(self) -> Any:
        if self.conn is not None and self.conn.connected:
            return self.conn
        ep = self.config.endpoint()
        kwargs: dict[str, Any] = {
            "user": ep["user"],
            "password": ep["password"] or "",
            "database": ep["database"],
            "connect_timeout": max(1, math.ceil(self.timeout)),
            "autocommit": True,
            "ssl": tls_context(self.config),
            "program_name": "sparki-exporter",
        }
        if self.config.unix_socket:
            kwargs["unix_socket"] = self.config.unix_socket
        else:
            kwargs["host"], kwargs["port"] = ep["host"], ep["port"]
        conn = await asyncmy.connect(**kwargs)
        try:
            version = str((await fetch(conn, VARIABLES_SQL))[0][0])
            self.mariadb = "mariadb" in version.lower()
            seconds = max(0.001, self.timeout)
            if self.mariadb:
                await fetch(conn, "SET SESSION max_statement_time = %s", (round(seconds, 3),))
            else:
                await fetch(conn, "SET SESSION max_execution_time = %s", (round(seconds * 1000),))
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return conn

    async def reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: S110 - already broken: nothing left to release
                pass

    async def close(self) -> None:
        await self.reset()

    async def poll(self) -> MysqlSnapshot:
        conn = await self._connection()
        start = time.perf_counter()
        await fetch(conn, PROBE_SQL)
        self.probe.observe(time.perf_counter() - start)
        version, max_conn, pfs, _comment = (await fetch(conn, VARIABLES_SQL))[0]
        status = {str(k).lower(): str(v) for k, v in await fetch(conn, STATUS_SQL)}
        ctx = Context(
            conn=conn,
            status=status,
            max_connections=int(max_conn),
            performance_schema=bool(int(pfs)),
            mariadb=self.mariadb,
            version=str(version),
        )
        steps = [(name, collector_step(c, ctx)) for name, _, c in self.collectors]
        parts, runs = await run(steps, connection_lost, describe)
        self.errors.report(runs)
        return MysqlSnapshot(
            target=self.config.name,
            version=str(version).split("-")[0],
            flavor="mariadb" if self.mariadb else "mysql",
            probe=self.probe.snapshot(),
            parts=tuple((name, parts[name]) for name, _, _ in self.collectors if name in parts),
            runs=runs,
            statements_enabled=any(name == "statements" for name, _, _ in self.collectors),
        )


def collector_step(collector: Any, ctx: Context) -> Any:
    async def step() -> Any:
        return await collector.collect(ctx)

    return step


def families(snap: MysqlSnapshot) -> list[Metric]:
    t = snap.target
    out: list[Metric] = [
        histogram_family(
            "sparki_mysql_probe_duration_seconds",
            "Round trip of a trivial query the exporter issues each poll",
            ["target"],
            [([t], snap.probe)],
        )
    ]
    info = GaugeMetricFamily(
        "sparki_mysql_server_info",
        "Server version and flavor; always 1",
        labels=["target", "version", "flavor"],
    )
    info.add_metric([t, snap.version, snap.flavor], 1)
    out.append(info)
    parts = dict(snap.parts)
    for name, part in snap.parts:
        module = importlib.import_module(f"{__package__}.{name}")
        out += module.families(t, part)
    if snap.statements_enabled:
        cap = GaugeMetricFamily(
            "sparki_capability",
            "1 when an optional data source is usable, 0 when it is not "
            "(the log says why and how to fix it)",
            labels=["adapter", "target", "capability"],
        )
        statements = parts.get("statements")
        cap.add_metric(
            ["mysql", t, "performance_schema"],
            1 if statements is not None and statements.available else 0,
        )
        out.append(cap)
    out += collector_families("mysql", t, snap.runs)
    return out
