"""``--web.config.file``: TLS and basic authentication in the exporter-toolkit format.

The file is the one every Prometheus exporter built on exporter-toolkit reads::

    tls_server_config:
      cert_file: server.crt            # paths are relative to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: clients-ca.crt                 # needed by the verifying types
      min_version: TLS12                              # TLS10..TLS13, default TLS12
      max_version: TLS13
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2b$12$...           # bcrypt hashes only

Every problem is reported with its dotted path (``tls_server_config.cert_file``) and
the exporter exits with status 2 before listening, as with the main config. Like
exporter-toolkit, authentication protects every path, ``/healthz`` included.

bcrypt is deliberately slow, so checks run on worker threads of their own (the event
loop keeps serving), at most two at a time (a flood of wrong passwords cannot take
every CPU) with at most eight more waiting (beyond that, 503 at once), and successful
checks are remembered under an HMAC of user, password and hash with a per-process
random key: the cache holds no password, and a changed hash never matches
an old entry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hashlib
import hmac
import os
import re
import secrets
import ssl
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from .config import ConfigError, Strict, _problems_from, parse_yaml

ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_ORDER = list(_VERSIONS)
# Keys of the exporter-toolkit format that Python's TLS stack cannot honour: refused
# with a reason instead of being silently ignored.
_UNSUPPORTED_TLS = {
    "cipher_suites": "not supported: Python's TLS uses OpenSSL's secure default ciphers",
    "curve_preferences": "not supported: OpenSSL's default curves are used",
    "prefer_server_cipher_suites": "not supported: OpenSSL's default order is used",
    "client_allowed_sans": "not supported; issue client certificates from a dedicated CA",
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
}
# Response headers exporter-toolkit lets a user set, with the values it accepts.
_HEADERS: dict[str, re.Pattern[str] | None] = {
    "Strict-Transport-Security": None,
    "Content-Security-Policy": None,
    "X-Content-Type-Options": re.compile(r"^nosniff$"),
    "X-Frame-Options": re.compile(r"^(?i:deny|sameorigin)$"),
    "X-XSS-Protection": None,
}
_BCRYPT = re.compile(r"^\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
HASH_HINT = "generate one with: htpasswd -nBC 12 '' | tr -d ':\\n'"


class TLSServerConfig(Strict):
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: ClientAuth = "NoClientCert"
    client_ca_file: str | None = None
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion = "TLS13"

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            problems = [f"{key}: {why}" for key, why in _UNSUPPORTED_TLS.items() if key in data]
            if problems:
                raise ValueError("\n".join(problems))
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        problems: list[str] = []
        if bool(self.cert_file) != bool(self.key_file):
            missing = "key_file" if self.cert_file else "cert_file"
            problems.append(f"{missing}: set both cert_file and key_file")
        if self.client_auth_type in ("RequestClientCert", "RequireAnyClientCert"):
            problems.append(
                f"client_auth_type: {self.client_auth_type} is not supported (Python's TLS "
                "cannot accept client certificates it does not verify); use "
                "VerifyClientCertIfGiven or "
                "RequireAndVerifyClientCert with client_ca_file"
            )
        verifying = self.client_auth_type in (
            "VerifyClientCertIfGiven",
            "RequireAndVerifyClientCert",
        )
        if verifying and not self.client_ca_file:
            problems.append(f"client_ca_file: {self.client_auth_type} needs client_ca_file")
        if self.client_ca_file and self.client_auth_type == "NoClientCert":
            problems.append(
                "client_auth_type: client_ca_file is set but client "
                "certificates are not checked; set RequireAndVerifyClientCert or "
                "VerifyClientCertIfGiven"
            )
        if _ORDER.index(self.min_version) > _ORDER.index(self.max_version):
            problems.append("min_version: is above max_version")
        if (self.client_ca_file or self.client_auth_type != "NoClientCert") and not (
            self.cert_file and self.key_file
        ):
            problems.append("cert_file: client certificates need TLS on (cert_file and key_file)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file and self.key_file)


class HTTPServerConfig(Strict):
    http2: bool = Field(True, description="accepted for compatibility; HTTP/1.1 is served")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _known_headers(cls, value: dict[str, str]) -> dict[str, str]:
        canonical = {name.lower(): name for name in _HEADERS}
        out: dict[str, str] = {}
        for name, header_value in value.items():
            known = canonical.get(name.lower())
            if known is None:
                raise ValueError(
                    f"header {name!r} cannot be set; allowed: " + ", ".join(sorted(_HEADERS))
                )
            pattern = _HEADERS[known]
            if pattern is not None and not pattern.match(header_value):
                raise ValueError(f"invalid value for {known}")
            if "\n" in header_value or "\r" in header_value:
                raise ValueError(f"invalid value for {known}")
            out[known] = header_value
        return out


class WebConfig(Strict):
    tls_server_config: TLSServerConfig = Field(default_factory=TLSServerConfig)
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for user, hashed in value.items():
            if not user or ":" in user:
                problems.append("user names must be non-empty and contain no ':'")
                continue
            match = _BCRYPT.match(hashed) if isinstance(hashed, str) else None
            if match is None or not 4 <= int(match.group(1)) <= 31:
                # The value is not echoed: a plain password put here by mistake must not
                # end up in a log.
                problems.append(f"{user}: not a bcrypt hash; {HASH_HINT}")
        if problems:
            raise ValueError("\n".join(problems))
        return value


@dataclass
class LoadedWebConfig:
    """A validated web config with its TLS context built (files read and checked)."""

    config: WebConfig
    ssl_context: ssl.SSLContext | None
    path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.config.basic_auth_users)


def _resolve(base: Path, name: str) -> str:
    path = Path(name)
    return str(path if path.is_absolute() else base / path)


def build_ssl_context(tls: TLSServerConfig, base: Path) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain HTTP; ConfigError on unusable files."""
    if not tls.enabled:
        return None
    assert tls.cert_file is not None and tls.key_file is not None
    problems: list[tuple[str, str]] = []
    cert, key = _resolve(base, tls.cert_file), _resolve(base, tls.key_file)
    for key_name, path in (("cert_file", cert), ("key_file", key)):
        if not os.access(path, os.R_OK):
            problems.append((f"tls_server_config.{key_name}", f"cannot read {path}"))
    ca = _resolve(base, tls.client_ca_file) if tls.client_ca_file else None
    if ca is not None and not os.access(ca, os.R_OK):
        problems.append(("tls_server_config.client_ca_file", f"cannot read {ca}"))
    if problems:
        raise ConfigError(problems)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.maximum_version = _VERSIONS[tls.max_version]
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            [
                (
                    "tls_server_config.cert_file",
                    "cannot load the certificate and key (not PEM, or the key does not "
                    f"match the certificate): {getattr(exc, 'reason', None) or exc}",
                )
            ]
        ) from None
    if ca is not None:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                [
                    (
                        "tls_server_config.client_ca_file",
                        f"not a PEM CA bundle: {getattr(exc, 'reason', None) or exc}",
                    )
                ]
            ) from None
    ctx.verify_mode = {
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }.get(tls.client_auth_type, ssl.CERT_NONE)
    return ctx


_RELATIVE = re.compile(r"^([^:\s]+): (.+)$", re.S)


def _nested_paths(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Join ``key: message`` lines of nested validators onto their model's path."""
    out = []
    for path, message in problems:
        match = _RELATIVE.match(message)
        if path and match:
            path, message = f"{path}.{match.group(1)}", match.group(2)
        out.append((path, message))
    return out


def validate_web(data: Any, base: Path, path: str | None = None) -> LoadedWebConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", "the web config must be a mapping of keys to values")])
    try:
        config = WebConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_nested_paths(_problems_from(exc))) from None
    if config.basic_auth_users:
        try:
            import bcrypt  # noqa: F401  (checked now: a missing package must not be a 500 later)
        except ImportError:
            raise ConfigError(
                [("basic_auth_users", "needs the bcrypt package: pip install bcrypt")]
            ) from None
    ctx = build_ssl_context(config.tls_server_config, base)
    return LoadedWebConfig(config, ctx, path, dict(config.http_server_config.headers))


def load_web_config(path: str | os.PathLike[str]) -> LoadedWebConfig:
    """Read and validate a web config file; ConfigError lists every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError([("", f"cannot read web config file {path}: {why}")]) from None
    data = parse_yaml(text, path)
    return validate_web(data, Path(path).resolve().parent, str(path))


# --- basic authentication --------------------------------------------------------------------


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic ...`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


class AuthBusy(Exception):
    """Too many password checks are waiting: answer 503 now rather than queue."""


class BasicAuth:
    """Checks credentials against bcrypt hashes, caching successes safely.

    Checks run on an executor of their own (never the loop's default one, which
    name resolution or reloads might be using) with ``CONCURRENCY`` threads, and at
    most ``QUEUE`` more checks wait for one: beyond that :meth:`check` raises
    :class:`AuthBusy` at once, so a flood of wrong passwords gets 503s instead of
    pushing a legitimate scrape past Prometheus's scrape timeout.
    """

    CACHE_SIZE = 1024
    CONCURRENCY = 2
    QUEUE = 8

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = {user: hashed.encode() for user, hashed in users.items()}
        self._key = secrets.token_bytes(32)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.pending = 0
        self.busy_refusals = 0
        self._dummy: bytes | None = None

    def _cache_key(self, user: str, password: str, hashed: bytes) -> bytes:
        message = b"\0".join([user.encode(), password.encode(), hashed])
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _dummy_hash(self) -> bytes:
        """A hash of the configured cost, for unknown users: their check takes as long."""
        import bcrypt

        if self._dummy is None:
            cost = 10
            for hashed in self.users.values():
                match = _BCRYPT.match(hashed.decode())
                if match:
                    cost = int(match.group(1))
                    break
            self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
        return self._dummy

    def _check(self, password: str, hashed: bytes | None) -> bool:
        import bcrypt

        target = hashed if hashed is not None else self._dummy_hash()
        try:
            ok = bcrypt.checkpw(password.encode(), target)
        except ValueError:  # over 72 bytes, or a hash bcrypt refuses
            ok = False
        return ok and hashed is not None

    async def check(self, header: str | None) -> bool:
        """True for valid credentials; AuthBusy when too many checks are waiting."""
        credentials = parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self.users.get(user)
        if hashed is not None:
            key = self._cache_key(user, password, hashed)
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        if self.pending >= self.CONCURRENCY + self.QUEUE:
            self.busy_refusals += 1
            raise AuthBusy
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.CONCURRENCY, thread_name_prefix="sparki-bcrypt"
            )
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._executor, self._check, password, hashed)
        finally:
            self.pending -= 1
        if ok and hashed is not None:
            self._ok[self._cache_key(user, password, hashed)] = None
            while len(self._ok) > self.CACHE_SIZE:
                self._ok.popitem(last=False)
        return ok

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
