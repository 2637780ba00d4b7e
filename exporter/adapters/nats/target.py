"""The NATS target: one client connection (the canary's) and one HTTP session to the
monitoring port, polled by running the enabled collectors in order.

The client connection is the target's liveness: failing to connect or losing it fails
the poll (sparki_up 0 with reason connect, auth or timeout). The monitoring endpoints
are separate collectors: when the monitoring port is down or unset, only their parts
are missing.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import nats
import nats.errors
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ...adapter import PollError, Reason
from ...collector import CollectorErrors, CollectorRun, enabled, run
from ...collector import families as collector_families
from ...config import GlobalConfig
from ...errtext import without_addresses
from ...metrics import HistogramState
from .catalog import COLLECTORS
from .config import CANARY_BUCKETS, NatsConfig
from .connz import ClosedState
from .context import CanaryState, MonitorError, NatsContext

log = logging.getLogger("sparki.nats")

ADAPTER = "nats"
MONITOR_COLLECTORS = frozenset({"varz", "jetstream", "connz", "healthz"})


@dataclass(frozen=True, slots=True)
class NatsSnapshot:
    """What one poll learned: each collector's part and how each collector did."""

    target: str
    parts: tuple[tuple[str, Any], ...]
    runs: tuple[CollectorRun, ...]
    monitor: bool  # whether a monitoring endpoint is configured


class _Lost(Exception):
    """The client connection is gone; the poll fails and the next one reconnects."""


def _describe(exc: BaseException) -> str:
    detail = str(exc).strip()
    text = type(exc).__name__ + (f": {detail}" if detail else "")
    text = without_addresses(text)
    return text if len(text) <= 300 else text[:297] + "..."


def _fatal(exc: BaseException) -> bool:
    return isinstance(
        exc,
        _Lost
        | nats.errors.ConnectionClosedError
        | nats.errors.StaleConnectionError
        | nats.errors.OutboundBufferLimitError
        | asyncio.TimeoutError,
    )


def classify(exc: BaseException) -> PollError:
    """Map nats-py, aiohttp and parsing errors to the core's reasons, with a safe message."""
    if isinstance(exc, PollError):
        return exc
    text = _describe(exc)
    if isinstance(exc, ssl.SSLError | aiohttp.ClientSSLError):
        # No reason of its own in the contract: connect, with a message that says TLS.
        detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
        return PollError(Reason.CONNECT, f"TLS handshake failed ({detail or type(exc).__name__})")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | nats.errors.TimeoutError):
        return PollError(Reason.TIMEOUT, text)
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization" in text.lower():
        return PollError(Reason.AUTH, text)
    if "permissions violation" in text.lower():
        return PollError(Reason.PERMISSION, text)
    if isinstance(
        exc,
        nats.errors.NoServersError
        | nats.errors.ConnectionClosedError
        | nats.errors.StaleConnectionError
        | _Lost
        | ConnectionError
        | OSError,
    ):
        return PollError(Reason.CONNECT, text)
    if isinstance(exc, MonitorError | aiohttp.ClientError | ValueError):
        return PollError(Reason.PROTOCOL, text)
    return PollError(Reason.OTHER, text)


class NatsTarget:
    """One NATS server."""

    def __init__(self, config: NatsConfig, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        self.enabled = enabled(COLLECTORS, global_config.collectors_for(ADAPTER), config.collectors)
        if config.monitor_url is None:
            self.enabled -= MONITOR_COLLECTORS
        self.modules = {
            c.name: importlib.import_module(f"{__package__}.{c.name}")
            for c in COLLECTORS
            if c.name in self.enabled
        }
        self.canary = CanaryState(HistogramState(CANARY_BUCKETS))
        self.closed = ClosedState()
        self.errors = CollectorErrors(ADAPTER, config.name)
        self.nc: Any = None
        self.http: aiohttp.ClientSession | None = None
        self.inbox = ""
        self._failed: BaseException | None = None

    async def _connect(self) -> None:
        if self.nc is not None and self.nc.is_connected:
            return
        await self._close_client()
        c = self.config
        self._failed = None

        async def on_error(exc: Exception) -> None:
            # nats-py reports auth and protocol errors here as well as raising them;
            # remember the first so the poll names it (never logged with secrets).
            self._failed = self._failed or exc

        kwargs: dict[str, Any] = {
            "servers": [c.url],
            "connect_timeout": max(self.timeout * 0.6, 0.1),
            "allow_reconnect": False,
            # 0 makes nats-py retry the first connect forever; 1 tries once more.
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.05,
            "error_cb": on_error,
            "name": "sparki-exporter",
        }
        if c.uses_tls():
            # nats-py upgrades to TLS when the server's INFO requires it, with this
            # context if given and the system CAs otherwise.
            kwargs["tls"] = c.ssl_context()
            if c.tls_server_name:
                kwargs["tls_hostname"] = c.tls_server_name
        if c.token is not None:
            kwargs["token"] = c.token.get_secret_value()
        if c.user is not None and c.password is not None:
            kwargs["user"] = c.user
            kwargs["password"] = c.password.get_secret_value()
        try:
            nc = await nats.connect(**kwargs)
        except Exception as exc:
            first = self._failed
            if isinstance(exc, nats.errors.NoServersError) and first is not None:
                raise classify(first) from None
            raise classify(exc) from None
        self.nc = nc
        self.inbox = nc.new_inbox()

        async def reply(msg: Any) -> None:
            await msg.respond(msg.data)

        await nc.subscribe(self.inbox, cb=reply)
        await asyncio.wait_for(nc.flush(), max(self.timeout * 0.3, 0.1))

    async def poll(self) -> NatsSnapshot:
        await self._connect()
        if self.http is None and self.config.monitor_url is not None:
            tls = self.config.ssl_context() if self.config.uses_tls() else None
            self.http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout * 0.5),
                connector=aiohttp.TCPConnector(ssl=tls if tls is not None else True),
            )
        ctx = NatsContext(
            self.config,
            self.nc,
            self.http,
            self.canary,
            self.inbox,
            self.config.canary_timeout or self.timeout * 0.5,
            self.closed,
        )

        def step(module: Any) -> Any:
            async def go() -> Any:
                if not self.nc.is_connected:
                    raise _Lost("connection to the server lost")
                return await module.collect(ctx)

            return go

        steps = [(c.name, step(self.modules[c.name])) for c in COLLECTORS if c.name in self.enabled]
        try:
            parts, runs = await run(steps, _fatal, _describe)
        except Exception as exc:
            raise classify(exc) from None
        if "canary" in parts and not self.nc.is_connected:
            raise PollError(Reason.CONNECT, "connection to the server lost")
        self.errors.report(runs)
        ordered = tuple((name, parts[name]) for name, _ in steps if name in parts)
        return NatsSnapshot(self.config.name, ordered, runs, self.config.monitor_url is not None)

    async def _close_client(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), 1.0)
            except Exception as exc:  # closing a broken connection may fail; drop it
                log.debug("closing the NATS connection failed: %s", type(exc).__name__)

    async def reset(self) -> None:
        await self._close_client()

    async def close(self) -> None:
        await self._close_client()
        if self.http is not None:
            await self.http.close()
            self.http = None


def families(snap: NatsSnapshot) -> list[Metric]:
    out: list[Metric] = []
    for name, part in snap.parts:
        module = importlib.import_module(f"{__package__}.{name}")
        out.extend(module.families(snap.target, part))
    cap = GaugeMetricFamily(
        "sparki_capability",
        "1 when the exporter can read this part of the server; 0 means its metrics are missing",
        labels=["adapter", "target", "capability"],
    )
    cap.add_metric([ADAPTER, snap.target, "monitoring"], 1.0 if snap.monitor else 0.0)
    out.append(cap)
    out.extend(collector_families(ADAPTER, snap.target, snap.runs))
    return out


def from_env(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """One target from NATS_URL (+ NATS_MONITOR_URL, NATS_TOKEN or NATS_USER/NATS_PASSWORD,
    NATS_TLS_CA_FILE, NATS_TLS_CERT_FILE/NATS_TLS_KEY_FILE, NATS_TLS_SERVER_NAME;
    SPARKI_NATS_TARGET names it)."""
    url = env.get("NATS_URL", "").strip()
    if not url:
        return []
    target: dict[str, Any] = {"name": env.get("SPARKI_NATS_TARGET", "nats"), "url": url}
    for key, field in (
        ("NATS_MONITOR_URL", "monitor_url"),
        ("NATS_TOKEN", "token"),
        ("NATS_USER", "user"),
        ("NATS_PASSWORD", "password"),
        ("NATS_TLS_CA_FILE", "tls_ca_file"),
        ("NATS_TLS_CERT_FILE", "tls_cert_file"),
        ("NATS_TLS_KEY_FILE", "tls_key_file"),
        ("NATS_TLS_SERVER_NAME", "tls_server_name"),
    ):
        value = env.get(key, "").strip()
        if value:
            target[field] = value
    return [target]


def _target(config: Any, global_config: GlobalConfig) -> NatsTarget:
    return NatsTarget(config, global_config)
