"""The etcd target's configuration."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ...config import TargetConfig
from .catalog import COLLECTORS

# etcd's own default for --quota-backend-bytes: 2 GiB.
DEFAULT_QUOTA = 2 * 1024**3


def _endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError("each endpoint must be a URL like https://etcd-0:2379 (no path)")
    if parts.username or parts.password:
        # Not echoed: the value holds a secret. It belongs in username/password(_file).
        raise ValueError("an endpoint must not carry credentials; use username and password_file")
    return value.rstrip("/")


class EtcdConfig(TargetConfig):
    """One etcd cluster, reached through its members' client URLs (the v3 JSON gateway)."""

    endpoints: list[str] = Field(
        min_length=1,
        max_length=16,
        description="client URLs of the members to watch; status is read from each",
    )
    username: str | None = None
    password: SecretStr | None = None
    ca_file: str | None = Field(None, description="CA bundle to verify the members' certificates")
    cert_file: str | None = Field(None, description="client certificate (etcd --client-cert-auth)")
    key_file: str | None = None
    tls_insecure_skip_verify: bool = False
    canary_prefix: str = Field(
        "/sparki-exporter/canary/",
        min_length=1,
        max_length=200,
        description="the canary writes, reads and deletes one key under this prefix",
    )
    quota_backend_bytes: int = Field(
        DEFAULT_QUOTA, gt=0, description="the members' --quota-backend-bytes (etcd's default 2 GiB)"
    )

    secret_fields: ClassVar[tuple[str, ...]] = ("password",)
    known_collectors: ClassVar[tuple[str, ...]] = tuple(c.name for c in COLLECTORS)

    @field_validator("endpoints")
    @classmethod
    def _check_endpoints(cls, value: list[str]) -> list[str]:
        out = [_endpoint(v) for v in value]
        if len(set(out)) != len(out):
            raise ValueError("an endpoint is listed twice")
        return out

    @model_validator(mode="after")
    def _check_pairs(self) -> EtcdConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password (or password_file), or neither")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file, or neither")
        return self

    def urls_with_tls(self) -> bool:
        return any(e.startswith("https://") for e in self.endpoints)


def from_env(env: Any) -> list[dict[str, Any]]:
    """ETCD_ENDPOINTS (comma-separated, as etcdctl's ETCDCTL_ENDPOINTS) names one target."""
    raw = env.get("ETCD_ENDPOINTS") or env.get("ETCDCTL_ENDPOINTS")
    if not raw:
        return []
    target: dict[str, Any] = {
        "name": env.get("ETCD_TARGET_NAME", "etcd"),
        "endpoints": [e.strip() for e in raw.split(",") if e.strip()],
    }
    for key, var in (
        ("username", "ETCD_USERNAME"),
        ("password", "ETCD_PASSWORD"),
        ("password_file", "ETCD_PASSWORD_FILE"),
        ("ca_file", "ETCD_CA_FILE"),
        ("cert_file", "ETCD_CERT_FILE"),
        ("key_file", "ETCD_KEY_FILE"),
    ):
        if env.get(var):
            target[key] = env[var]
    return [target]
