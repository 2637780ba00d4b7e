"""The NATS target's configuration."""

from __future__ import annotations

import ssl
from pathlib import Path
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
    # Named as the Redis and MySQL adapters name them. They apply to the client
    # connection whenever the server requires TLS (tls:// or its INFO says so) and to an
    # https monitor_url.
    tls_ca_file: str | None = Field(None, description="CA bundle to verify the server with")
    tls_cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    tls_key_file: str | None = Field(None, description="client key (mutual TLS)")
    tls_server_name: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="name the server certificate must carry; default: the URL's host",
    )
    tls_insecure_skip_verify: bool = False
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

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _auth(self) -> NatsConfig:
        if self.token is not None and (self.user or self.password):
            raise ValueError("set either token or user/password, not both")
        if (self.user is None) != (self.password is None):
            raise ValueError("set both user and password, or neither")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        if self.uses_tls():
            try:
                self.ssl_context()
            except (ssl.SSLError, OSError) as exc:
                # Said at load time, naming the fields, not at every poll as "connect".
                raise ValueError(
                    f"tls_ca_file / tls_cert_file / tls_key_file cannot be loaded "
                    f"({type(exc).__name__}: {getattr(exc, 'reason', None) or exc})"
                ) from None
        return self

    def uses_tls(self) -> bool:
        """Whether any TLS setting or URL asks for a context of our own."""
        return (
            self.url.startswith("tls://")
            or bool(self.monitor_url and self.monitor_url.startswith("https://"))
            or bool(self.tls_ca_file or self.tls_cert_file or self.tls_server_name)
            or self.tls_insecure_skip_verify
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for the client connection and an https monitoring endpoint:
        system CAs unless tls_ca_file, a client certificate for mutual TLS if given."""
        ctx = ssl.create_default_context(cafile=self.tls_ca_file)
        if self.tls_cert_file and self.tls_key_file:
            ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        if self.tls_insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx
