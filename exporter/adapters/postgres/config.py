"""The PostgreSQL target's configuration: what one server is and how it is polled.

Kept apart from the target so that collectors (which get the config) and the target
import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field, SecretStr, field_validator

from ...bucket_edges import require_edges
from ...config import Duration, TargetConfig, at_most
from .catalog import COLLECTORS
from .errors import check_dsn_options

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
    vacuum_top_n: int = Field(
        10, ge=0, le=1000, description="vacuum collector: tables exported by dead tuples"
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
