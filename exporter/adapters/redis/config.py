"""A Redis target's configuration: the URL, credentials, TLS, cluster discovery.

Kept apart from the connection code so that the other parts (collectors, catalog) can
read the target's options without the driver. New options of a collector go on
:class:`RedisConfig` with a default, next to the others, so existing files stay valid.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from ...config import Duration, TargetConfig
from .catalog import COLLECTORS
from .streams import StreamsConfig
from .ttl import TtlPolicy

# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect, parsed from the URL; never logged or exported."""

    tls: bool
    host: str = ""
    port: int = 6379
    path: str = ""  # unix socket
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> Endpoint:
    """Parse redis://, rediss:// or unix:// without ever quoting the input in an error."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid redis://, rediss:// or unix:// URL") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix://")
    if parts.query or parts.fragment:
        raise ValueError("URL options (?...) are not supported: use the target's keys instead")
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs a socket path, e.g. unix:///run/redis/redis.sock")
        return Endpoint(False, path=parts.path, username=user, password=password)
    if not parts.hostname:
        raise ValueError("the URL has no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the URL path may only be a database number")
    return Endpoint(
        parts.scheme == "rediss",
        host=parts.hostname,
        port=port or 6379,
        username=user,
        password=password,
    )


def host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise ValueError("each seed node must be HOST:PORT")
    return host.strip("[]"), int(port)


class RedisConfig(TargetConfig):
    """One Redis or Valkey server, or one Redis Cluster (``cluster: true``)."""

    secret_fields = ("password",)
    known_collectors = tuple(c.name for c in COLLECTORS)

    url: str = Field(
        "redis://localhost:6379",
        description="redis://host:port, rediss://host:port (TLS) or unix:///path",
    )
    username: str | None = Field(None, description="ACL user; overrides a user in the URL")
    password: SecretStr | None = None
    tls_ca_file: str | None = Field(None, description="CA bundle to verify the server with")
    tls_cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    tls_key_file: str | None = Field(None, description="client key (mutual TLS)")
    tls_insecure_skip_verify: bool = False
    cluster: bool = Field(False, description="discover nodes with CLUSTER NODES, poll each")
    seed_nodes: tuple[str, ...] = Field(
        (), description="more HOST:PORT entry points for cluster discovery"
    )
    commands_top_n: int = Field(
        30, ge=0, le=1000, description="commands with their own cmd label; the rest is other"
    )
    socket_timeout: Duration | None = Field(
        None, description="connect and read timeout; defaults to half the poll timeout"
    )
    # --- collector options (one block per collector; defaults keep old files valid) ---
    errorstats_max_prefixes: int = Field(
        30,
        ge=1,
        le=500,
        description="error prefixes with their own series (errorstats); the rest is other",
    )
    ttl_policy: TtlPolicy | None = Field(
        None, description="TTL conformance: key patterns and their max TTL (ttl collector)"
    )
    streams: StreamsConfig | None = Field(
        None, description="stream key patterns to watch, e.g. build:*:logs (streams collector)"
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_url(value)
        return value

    @field_validator("seed_nodes")
    @classmethod
    def _valid_seeds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for seed in value:
            host_port(seed)
        return value

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RedisConfig:
        endpoint = parse_url(self.url)
        tls_options = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        if any(tls_options) and not endpoint.tls:
            raise ValueError("tls_* options need a rediss:// url")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        if self.cluster and endpoint.path:
            raise ValueError("cluster: true needs a redis:// or rediss:// url, not unix://")
        if self.seed_nodes and not self.cluster:
            raise ValueError("seed_nodes is only used with cluster: true")
        return self

    def extra_secrets(self) -> list[str]:
        password = parse_url(self.url).password
        return [password] if password else []


def from_env(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Targets from the platform's variables: REDIS_HOST (+ REDIS_PORT, REDIS_PASSWORD,
    REDIS_USERNAME, REDIS_TLS) and/or REDIS_CLUSTER_NODES (comma-separated HOST:PORT)."""
    scheme = "rediss" if env.get("REDIS_TLS", "").lower() in ("1", "true", "yes") else "redis"
    common: dict[str, Any] = {}
    if env.get("REDIS_USERNAME"):
        common["username"] = env["REDIS_USERNAME"]
    if env.get("REDIS_PASSWORD"):
        common["password"] = env["REDIS_PASSWORD"]
    targets: list[dict[str, Any]] = []
    host = env.get("REDIS_HOST", "").strip()
    if host:
        if "://" in host:
            url = host
        else:
            shown = f"[{host}]" if ":" in host else host
            url = f"{scheme}://{shown}:{env.get('REDIS_PORT', '6379').strip()}"
        targets.append({"name": env.get("SPARKI_REDIS_TARGET", "redis"), "url": url, **common})
    nodes = [n.strip() for n in env.get("REDIS_CLUSTER_NODES", "").split(",") if n.strip()]
    if nodes:
        first, *rest = nodes
        targets.append(
            {
                "name": env.get("SPARKI_REDIS_CLUSTER_TARGET", "redis-cluster"),
                "url": first if "://" in first else f"{scheme}://{first}",
                "cluster": True,
                "seed_nodes": rest,
                **common,
            }
        )
    return targets
