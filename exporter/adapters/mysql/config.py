"""The MySQL/MariaDB target's configuration, and targets from MYSQL_* variables.

Driver-free (the URL is parsed with the standard library), so ``check-config`` can
validate a file without asyncmy installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ...bucket_edges import require_edges
from ...config import TargetConfig
from .catalog import COLLECTORS

# Bounds in seconds; 0.05 and 0.1 are the storage design's warning and critical p95
# lines, so they must be bucket edges for histogram_quantile to place them exactly.
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
SCHEMES = ("mysql", "mariadb")


def _buckets(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if not value or any(not isinstance(v, int | float) or v <= 0 for v in value):
            raise ValueError("must be a non-empty list of positive numbers of seconds")
        if list(value) != sorted(set(value)):
            raise ValueError("must be strictly increasing")
        require_edges(value, "mysql_statement_latency")
    return value


def split_dsn(dsn: str) -> SplitResult:
    """The parts of a ``mysql://user[:password]@host[:port][/database]`` URL.

    ValueError with a message that never quotes the URL (it may hold a password).
    """
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid mysql:// URL (the port must be 1 to 65535)") from None
    if parts.scheme not in SCHEMES:
        raise ValueError("must start with mysql:// or mariadb://")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    if port == 0:
        raise ValueError("the port in the URL must be 1 to 65535")
    if parts.query or parts.fragment:
        raise ValueError("options in the URL are not supported; use the target's own keys")
    return parts


class MysqlConfig(TargetConfig):
    """One MySQL or MariaDB server: ``dsn``, or ``host``/``port``/``user``/``database``."""

    secret_fields = ("password",)
    known_collectors = tuple(c.name for c in COLLECTORS)

    dsn: str | None = Field(
        None, description="mysql://user@host:port/database (a password here is accepted)"
    )
    host: str = "127.0.0.1"
    port: int = Field(3306, ge=1, le=65535)
    unix_socket: str | None = Field(None, description="a local socket instead of TCP")
    user: str = "sparki"
    password: SecretStr | None = None
    database: str | None = None
    tls: bool = False
    tls_ca_file: str | None = Field(None, description="CA bundle to verify the server with")
    tls_cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    tls_key_file: str | None = Field(None, description="client key (mutual TLS)")
    tls_insecure_skip_verify: bool = False
    statements_top_n: int = Field(100, ge=0, le=10000)
    exclude_own_statements: bool = Field(
        True,
        description="leave out the exporter's own statements (recognized by digest), which "
        "would otherwise pull latency percentiles down on a quiet server",
    )
    query_text_length: int = Field(120, ge=16, le=1024)
    statement_buckets: tuple[float, ...] = STATEMENT_BUCKETS

    _check_buckets = field_validator("statement_buckets", mode="before")(_buckets)

    @field_validator("dsn")
    @classmethod
    def _valid_dsn(cls, value: str | None) -> str | None:
        if value is not None:
            split_dsn(value)
        return value

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError("no such file")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MysqlConfig:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        if self.dsn is not None and self.password is not None and split_dsn(self.dsn).password:
            raise ValueError("set the password in the dsn or in password, not both")
        return self

    def endpoint(self) -> dict[str, Any]:
        """host, port, user, database and password (or None) after the DSN is applied."""
        out: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "database": self.database,
            "password": self.password.get_secret_value() if self.password else None,
        }
        if self.dsn is not None:
            parts = split_dsn(self.dsn)
            out["host"] = parts.hostname
            out["port"] = parts.port or 3306
            if parts.username:
                out["user"] = unquote(parts.username)
            if parts.password:
                out["password"] = unquote(parts.password)
            database = unquote(parts.path.lstrip("/"))
            if database:
                out["database"] = database
        return out

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.tls_ca_file or self.tls_cert_file)

    def extra_secrets(self) -> list[str]:
        if self.dsn is None:
            return []
        password = split_dsn(self.dsn).password
        return [password, unquote(password)] if password else []


def from_env(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """One target from MYSQL_HOST (+ MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD, MYSQL_DATABASE)."""
    host = env.get("MYSQL_HOST", "").strip()
    if not host:
        return []
    target: dict[str, Any] = {"name": env.get("SPARKI_MYSQL_TARGET", "mysql"), "host": host}
    if env.get("MYSQL_PORT", "").strip():
        target["port"] = env["MYSQL_PORT"].strip()
    if env.get("MYSQL_USER"):
        target["user"] = env["MYSQL_USER"]
    if env.get("MYSQL_PASSWORD"):
        target["password"] = env["MYSQL_PASSWORD"]
    if env.get("MYSQL_DATABASE"):
        target["database"] = env["MYSQL_DATABASE"]
    return [target]
