"""The NATS target's configuration."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ...config import Duration, TargetConfig
from .catalog import COLLECTORS

# The canary's histogram; 0.05 and 0.25 are nats_canary_latency's thresholds.
CANARY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class NatsConfig(TargetConfig):
    """One NATS server: its client port (canary) and, optionally, its monitoring port."""

    secret_fields = ("token", "password")
    known_collectors = tuple(c.name for c in COLLECTORS)

    url: str = Field(description="client URL, nats://host:4222 (tls:// for TLS)")
    monitor_url: str | None = Field(
        None,
        description="monitoring endpoint, http://host:8222; unset: varz, jetstream, connz "
        "and healthz are skipped (sparki_capability says so)",
    )
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    top_streams: int = Field(20, ge=1, le=500, description="streams exported by name; rest: other")
    top_consumers: int = Field(
        50, ge=1, le=1000, description="consumers exported by name (most pending); rest: other"
    )
    connz_limit: int = Field(
        100,
        ge=1,
        le=10000,
        description="open and closed connections read from /connz per poll (most pending first)",
    )
    top_clients: int = Field(
        10, ge=1, le=100, description="client names exported by pending bytes; rest: other"
    )
    canary_timeout: Duration | None = Field(None, description="default: half the poll_timeout")

    @field_validator("url")
    @classmethod
    def _client_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError("must be nats://host:port or tls://host:port")
        if parts.username or parts.password:
            raise ValueError("put credentials in user/password or token, not in the URL")
        return value

    @field_validator("monitor_url")
    @classmethod
    def _monitor(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http://host:port or https://host:port")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _auth(self) -> NatsConfig:
        if self.token is not None and (self.user or self.password):
            raise ValueError("set either token or user/password, not both")
        if (self.user is None) != (self.password is None):
            raise ValueError("set both user and password, or neither")
        return self
