"""Collector ``replication``: the replica's IO and SQL threads, lag and last errors.

``SHOW REPLICA STATUS`` (MySQL 8.0.22+, MariaDB 10.5+; columns ``Replica_*`` and
``*_Source`` in MySQL) or, on older servers, ``SHOW SLAVE STATUS``; on MariaDB
``SHOW ALL REPLICAS STATUS`` so every multi-source connection is a channel. One row
per channel; none on a server that is not a replica (then no series: a source is not
a stopped replica); the unnamed default channel is ``channel="default"``. Needs
REPLICATION CLIENT (MySQL) or REPLICA MONITOR / SUPER (MariaDB): without it the
collector fails alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config import TargetConfig
from ...metrics import GaugeMetricFamily, Metric
from .context import Context, fetch_dicts
from .errors import code_of

SYNTAX_ERROR = 1064


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    io_running: bool
    sql_running: bool
    lag: float | None  # None: unknown (a thread is stopped)
    io_errno: int  # Last_IO_Errno, 0 when none
    sql_errno: int  # Last_SQL_Errno

    @property
    def io_error(self) -> bool:
        return self.io_errno != 0

    @property
    def sql_error(self) -> bool:
        return self.sql_errno != 0


@dataclass(frozen=True, slots=True)
class Part:
    channels: tuple[Channel, ...]


def _pick(row: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in row:
            return row[name]
    return None


def channel_of(row: dict[str, Any]) -> Channel:
    """One channel from a status row, whatever the server's column names."""
    # The unnamed default channel is "" on the server: "default" here, since Prometheus
    # drops an empty label (and the alert's labels would not tell the channel).
    name = _pick(row, "Channel_Name", "Channel_name", "Connection_name") or "default"
    io = str(_pick(row, "Replica_IO_Running", "Slave_IO_Running") or "")
    sql = str(_pick(row, "Replica_SQL_Running", "Slave_SQL_Running") or "")
    lag = _pick(row, "Seconds_Behind_Source", "Seconds_Behind_Master")
    return Channel(
        name=str(name),
        io_running=io.lower() == "yes",
        sql_running=sql.lower() == "yes",
        lag=float(lag) if lag is not None else None,
        io_errno=int(_pick(row, "Last_IO_Errno") or 0),
        sql_errno=int(_pick(row, "Last_SQL_Errno") or 0),
    )


class Collector:
    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.statement: str | None = None

    async def collect(self, ctx: Context) -> Part:
        if self.statement is None:
            first = "SHOW ALL REPLICAS STATUS" if ctx.mariadb else "SHOW REPLICA STATUS"
            try:
                rows = await fetch_dicts(ctx.conn, first)
                self.statement = first
            except Exception as exc:
                if code_of(exc) != SYNTAX_ERROR:
                    raise
                self.statement = "SHOW ALL SLAVES STATUS" if ctx.mariadb else "SHOW SLAVE STATUS"
                rows = await fetch_dicts(ctx.conn, self.statement)
        else:
            rows = await fetch_dicts(ctx.conn, self.statement)
        return Part(tuple(sorted((channel_of(r) for r in rows), key=lambda c: c.name)))


def families(target: str, part: Part) -> list[Metric]:
    running = GaugeMetricFamily(
        "sparki_mysql_replication_running",
        "1 when the replica's thread (io: receiving from the source, sql: applying) runs",
        labels=["target", "channel", "thread"],
    )
    error = GaugeMetricFamily(
        "sparki_mysql_replication_last_error",
        "1 when the thread's last error (Last_IO_Errno / Last_SQL_Errno) is set",
        labels=["target", "channel", "thread"],
    )
    # The number itself, as mysqld_exporter's mysql_slave_status_last_{io,sql}_errno:
    # which error (1062 duplicate key, 2003 cannot reach the source, ...) tells the
    # fix; the text (Last_*_Error) is left out, it can quote hosts and row data.
    errno = GaugeMetricFamily(
        "sparki_mysql_replication_last_error_number",
        "The thread's last error number (Last_IO_Errno / Last_SQL_Errno); 0 when none",
        labels=["target", "channel", "thread"],
    )
    lag = GaugeMetricFamily(
        "sparki_mysql_replication_lag_seconds",
        "Seconds_Behind_Master/Source; absent while a thread is stopped (unknown)",
        labels=["target", "channel"],
    )
    for ch in part.channels:
        running.add_metric([target, ch.name, "io"], 1 if ch.io_running else 0)
        running.add_metric([target, ch.name, "sql"], 1 if ch.sql_running else 0)
        error.add_metric([target, ch.name, "io"], 1 if ch.io_error else 0)
        error.add_metric([target, ch.name, "sql"], 1 if ch.sql_error else 0)
        errno.add_metric([target, ch.name, "io"], ch.io_errno)
        errno.add_metric([target, ch.name, "sql"], ch.sql_errno)
        if ch.lag is not None:
            lag.add_metric([target, ch.name], ch.lag)
    return [running, error, errno, lag]
