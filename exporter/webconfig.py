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
    rate_limit: {interval: 100ms, burst: 20}

The keys are those of exporter-toolkit's format as of ``TOOLKIT_VERSION``; the few that
Python's TLS cannot honour are refused with the reason, never silently ignored.

Every problem is reported with its dotted path (``tls_server_config.cert_file``) and
the exporter exits with status 2 before listening, as with the main config. Like
exporter-toolkit, authentication protects every path, ``/healthz`` included.

The file and the certificate files it names are watched (see :class:`WebConfigWatch`)
and re-read on SIGHUP: a rotated certificate is served without a restart, and a broken
new file keeps the old one in force.

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
import ipaddress
import os
import re
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from .config import (
    ConfigError,
    Strict,
    _problems_from,
    parse_duration,
    parse_yaml,
    unknown_key,
)

ClientAuth = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
# The exporter-toolkit release whose web config format this module follows.
TOOLKIT_VERSION = "v0.14"
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
    "curve_preferences": (
        "not supported: Python's ssl module cannot set a list of curves, OpenSSL's "
        "default ones (X25519, P-256, P-384, P-521) are used"
    ),
    "cert": (
        "inline certificates are not supported (Python's ssl module loads a "
        "certificate chain from files only); use cert_file"
    ),
    "key": (
        "inline keys are not supported (Python's ssl module loads keys from files "
        "only, and a key must not be written to disk on our behalf); use key_file"
    ),
}
# exporter-toolkit takes Go's names; these are the TLS 1.2 suites Go's
# tls.CipherSuites() lists (the secure ones), with OpenSSL's name for each. TLS 1.3
# suites are accepted and, as in Go, not configurable.
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
_TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
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
    client_ca: str | None = Field(None, description="inline PEM CA bundle")
    client_allowed_sans: list[str] = Field(default_factory=list)
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            problems = [
                f"{key}: {why} (the format supported is exporter-toolkit {TOOLKIT_VERSION}'s)"
                for key, why in _UNSUPPORTED_TLS.items()
                if key in data
            ]
            if problems:
                raise ValueError("\n".join(problems))
        return data

    @field_validator("cipher_suites")
    @classmethod
    def _known_ciphers(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in _CIPHERS and name not in _TLS13_SUITES]
        if unknown:
            raise ValueError(
                f"unknown or insecure cipher suite {unknown[0]!r}; allowed: "
                + ", ".join([*_CIPHERS, *sorted(_TLS13_SUITES)])
            )
        return value

    @property
    def openssl_ciphers(self) -> str | None:
        """OpenSSL's cipher string for the TLS 1.2 suites chosen, or None for its defaults."""
        names = [_CIPHERS[name] for name in self.cipher_suites if name in _CIPHERS]
        return ":".join(names) if names else None

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
        if self.client_ca_file and self.client_ca:
            problems.append("client_ca: set either client_ca or client_ca_file, not both")
        has_ca = bool(self.client_ca_file or self.client_ca)
        if verifying and not has_ca:
            problems.append(f"client_ca_file: {self.client_auth_type} needs client_ca_file")
        if self.client_allowed_sans and self.client_auth_type != "RequireAndVerifyClientCert":
            problems.append(
                "client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert "
                "(without a verified certificate there is no SAN to match)"
            )
        if self.cipher_suites and not any(name in _CIPHERS for name in self.cipher_suites):
            if _ORDER.index(self.min_version) < _ORDER.index("TLS13"):
                problems.append(
                    "cipher_suites: lists TLS 1.3 suites only, which are not configurable; "
                    "add TLS 1.2 suites or remove the key"
                )
        if has_ca and self.client_auth_type == "NoClientCert":
            problems.append(
                "client_auth_type: client_ca_file is set but client "
                "certificates are not checked; set RequireAndVerifyClientCert or "
                "VerifyClientCertIfGiven"
            )
        if _ORDER.index(self.min_version) > _ORDER.index(self.max_version):
            problems.append("min_version: is above max_version")
        if (has_ca or self.client_auth_type != "NoClientCert") and not (
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


class RateLimitConfig(Strict):
    """A token bucket over every request, as exporter-toolkit's: one request per
    ``interval`` on average, ``burst`` at once; beyond, 429. interval 0: no limit."""

    interval: float = 0.0
    burst: int = Field(0, ge=0, le=1_000_000)

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        if value in (0, "0", "0s"):
            return 0.0
        return parse_duration(value)

    @model_validator(mode="after")
    def _burst(self) -> RateLimitConfig:
        if self.interval > 0 and self.burst < 1:
            raise ValueError("burst: must be at least 1 when interval is set (0 refuses all)")
        return self


class WebConfig(Strict):
    tls_server_config: TLSServerConfig = Field(default_factory=TLSServerConfig)
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)

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
    # Every file this config was built from (itself, certificate, key, CA), resolved:
    # what the watcher stats.
    files: tuple[str, ...] = ()

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
    ciphers = tls.openssl_ciphers
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
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
    if ca is not None or tls.client_ca:
        key_name = "client_ca_file" if ca is not None else "client_ca"
        try:
            if ca is not None:
                ctx.load_verify_locations(cafile=ca)
            else:
                ctx.load_verify_locations(cadata=tls.client_ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                [
                    (
                        f"tls_server_config.{key_name}",
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


def _every_problem(data: dict[Any, Any]) -> list[tuple[str, str]]:
    """Each section validated on its own (and the refused TLS keys apart from the
    others), so one check-config run lists every problem of the file."""
    problems: list[tuple[str, str]] = []
    for key in data:
        if key not in WebConfig.model_fields:
            problems.append((str(key), unknown_key(str(key), WebConfig.model_fields)))
    for name in WebConfig.model_fields:
        if name not in data:
            continue
        value = data[name]
        if name == "tls_server_config" and isinstance(value, dict):
            refused = [key for key in _UNSUPPORTED_TLS if key in value]
            try:
                TLSServerConfig.model_validate({key: value[key] for key in refused})
            except ValidationError as exc:
                problems += _nested_paths(_problems_from(exc, WebConfig, name))
            value = {k: v for k, v in value.items() if k not in refused}
        try:
            WebConfig.model_validate({name: value})
        except ValidationError as exc:
            found = _nested_paths(_problems_from(exc, WebConfig))
            problems += [p for p in found if p not in problems]
    return problems


def validate_web(data: Any, base: Path, path: str | None = None) -> LoadedWebConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", "the web config must be a mapping of keys to values")])
    try:
        config = WebConfig.model_validate(data)
    except ValidationError as exc:
        problems = _every_problem(data) or _nested_paths(_problems_from(exc, WebConfig))
        raise ConfigError(problems) from None
    if config.basic_auth_users:
        try:
            import bcrypt  # noqa: F401  (checked now: a missing package must not be a 500 later)
        except ImportError:
            raise ConfigError(
                [("basic_auth_users", "needs the bcrypt package: pip install bcrypt")]
            ) from None
    tls = config.tls_server_config
    ctx = build_ssl_context(tls, base)
    files = [str(Path(path).resolve())] if path else []
    named = (tls.cert_file, tls.key_file, tls.client_ca_file)
    files += [_resolve(base, name) for name in named if name]
    return LoadedWebConfig(config, ctx, path, dict(config.http_server_config.headers), tuple(files))


def load_web_config(path: str | os.PathLike[str]) -> LoadedWebConfig:
    """Read and validate a web config file; ConfigError lists every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError([("", f"cannot read the file: {why}")]) from None
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


# --- rate limit, client SANs, and the parts a reload replaces --------------------------------


class RateLimiter:
    """A token bucket: ``burst`` requests at once, then one per ``interval`` seconds.

    One bucket for the whole server, as exporter-toolkit's: it bounds what any client
    (or all of them) can make the exporter do, whoever they are.
    """

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        self.burst = burst
        self.tokens = float(burst)
        self.last = time.monotonic()
        self.refused = 0

    def take(self) -> float:
        """0 when the request may go on; otherwise the seconds until it could."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) / self.interval)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        self.refused += 1
        return (1.0 - self.tokens) * self.interval


def _san_values(peercert: Mapping[str, Any] | None) -> set[str]:
    """A verified client certificate's subject alternative names, IPs normalised."""
    out: set[str] = set()
    for kind, value in (peercert or {}).get("subjectAltName", ()):
        if kind == "IP Address":
            try:
                value = str(ipaddress.ip_address(value.strip()))
            except ValueError:
                continue
        out.add(value)
    return out


def _normalise_san(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


@dataclass
class WebSecurity:
    """What the request middleware enforces; a web config reload replaces the fields.

    Handlers read the fields on every request, so a reload takes effect at the next
    request without touching the listeners.
    """

    auth: BasicAuth | None = None
    headers: dict[str, str] = field(default_factory=dict)
    limiter: RateLimiter | None = None
    allowed_sans: frozenset[str] = frozenset()

    @classmethod
    def of(cls, loaded: LoadedWebConfig | None, old: WebSecurity | None = None) -> WebSecurity:
        """The enforcement of ``loaded``; state of ``old`` is kept where the settings
        did not change (the password cache, the rate limiter's bucket)."""
        if loaded is None:
            return cls()
        config = loaded.config
        auth = None
        if config.basic_auth_users:
            wanted = {user: hashed.encode() for user, hashed in config.basic_auth_users.items()}
            if old is not None and old.auth is not None and old.auth.users == wanted:
                auth = old.auth
            else:
                auth = BasicAuth(config.basic_auth_users)
        limiter = None
        rate = config.rate_limit
        if rate.interval > 0:
            previous = old.limiter if old is not None else None
            if previous is not None and (previous.interval, previous.burst) == (
                rate.interval,
                rate.burst,
            ):
                limiter = previous
            else:
                limiter = RateLimiter(rate.interval, rate.burst)
        sans = frozenset(_normalise_san(v) for v in config.tls_server_config.client_allowed_sans)
        return cls(auth, dict(loaded.headers), limiter, sans)

    def san_allowed(self, peercert: Mapping[str, Any] | None) -> bool:
        return not self.allowed_sans or bool(self.allowed_sans & _san_values(peercert))

    def close(self) -> None:
        if self.auth is not None:
            self.auth.close()


class ServerTLS:
    """The listeners' TLS context, whose certificates can change under them.

    asyncio binds a listener to one SSLContext for its life. That context gets an SNI
    callback (OpenSSL calls it for every ClientHello, with or without a server name)
    that moves the handshake onto the newest context: certificate, key and client CA
    store come from it. The settings OpenSSL copies into a connection before that
    callback runs (protocol versions, verify mode, options, cipher list) are also
    written onto the listeners' own context at each update.
    """

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.listener = ctx
        self.current = ctx
        ctx.sni_callback = self._pick

    def _pick(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        current = self.current
        if sslobj.context is not current:
            sslobj.context = current
        return None

    def update(self, ctx: ssl.SSLContext, ciphers: str | None) -> None:
        listener = self.listener
        listener.minimum_version = ctx.minimum_version
        listener.maximum_version = ctx.maximum_version
        listener.verify_mode = ctx.verify_mode
        listener.options = ctx.options
        listener.set_ciphers(ciphers or "DEFAULT")
        self.current = ctx


Fingerprint = tuple[tuple[str, tuple[int, int, int, int] | None], ...]


def fingerprint(paths: Sequence[str]) -> Fingerprint:
    """(device, inode, size, mtime) of each file, None when missing.

    Blocking (stat): call it off the event loop. The inode catches Kubernetes' secret
    updates, which swap a symlink rather than write the file.
    """
    out: list[tuple[str, tuple[int, int, int, int] | None]] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((path, None))
            continue
        out.append((path, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)))
    return tuple(out)
