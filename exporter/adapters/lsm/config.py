"""The LSM store target's configuration."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ...config import TargetConfig
from .catalog import COLLECTORS

Engine = Literal["badger", "leveldb", "pebble"]


class LsmConfig(TargetConfig):
    """One embedded store: the directory it lives in (mounted into the exporter, a
    sidecar) and, for Badger, the host service's Go expvar endpoint."""

    known_collectors = tuple(c.name for c in COLLECTORS)

    engine: Engine = Field(description="badger, leveldb or pebble: decides the file kinds")
    directory: str = Field(
        description="the store's directory as mounted in the exporter (read-only is enough)"
    )
    expvar_url: str | None = Field(
        None,
        description="the host service's expvar endpoint, http://host:port/debug/vars"
        " (Badger only); unset: the expvar collector is skipped (and no expvar"
        " capability is exported)",
    )
    max_files: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="files looked at per poll at most; past it the walk stops and"
        " sparki_lsm_directory_walk_truncated says so",
    )
    max_depth: int = Field(3, ge=0, le=16, description="subdirectory levels walked below directory")

    @field_validator("directory")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path (where the store's volume is mounted)")
        return value.rstrip("/") or "/"

    @field_validator("expvar_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http://host:port/debug/vars")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials")
        if parts.path in ("", "/"):
            value = value.rstrip("/") + "/debug/vars"
        return value

    @model_validator(mode="after")
    def _badger_only(self) -> LsmConfig:
        if self.expvar_url is not None and self.engine != "badger":
            raise ValueError(
                f"expvar_url: only Badger publishes its state through expvar; remove it for"
                f" engine {self.engine}"
            )
        return self
