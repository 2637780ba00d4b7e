"""The LSM store target: the store's directory (walked on the target's own thread) and,
for Badger, the host service's expvar endpoint, polled by running the enabled
collectors in order.

Either source failing fails the poll (sparki_up 0) with a reason an operator can act
on: connect (the directory does not exist - the volume is not mounted - or the host
service refuses connections), permission (the directory is not readable), timeout (the
host service hangs), protocol (it answers something other than expvar's JSON). What
the other source still measured is exported with the failed poll (PollError.snapshot):
the filesystem's free space stays visible while the host service is down, which is
when a full disk is the likely cause.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ...adapter import PollError, Reason
from ...collector import CollectorErrors, CollectorRun, enabled, run
from ...collector import families as collector_families
from ...config import GlobalConfig
from ...errtext import without_addresses
from ...logs import kv
from .catalog import COLLECTORS
from .config import LsmConfig
from .context import DirectoryError, ExpvarError, LsmContext
from .directory import WalkState

log = logging.getLogger("sparki.lsm")

ADAPTER = "lsm"


@dataclass(frozen=True, slots=True)
class LsmSnapshot:
    """What one poll learned: each collector's part and how each collector did."""

    target: str
    engine: str
    parts: tuple[tuple[str, Any], ...]
    runs: tuple[CollectorRun, ...]
    expvar: bool  # expvar configured, read, and every expected variable found
    expvar_expected: bool = True  # an expvar_url is configured and the collector is on


def _describe(exc: BaseException) -> str:
    detail = str(exc).strip()
    if isinstance(exc, DirectoryError | ExpvarError):
        text = detail
    else:
        text = type(exc).__name__ + (f": {detail}" if detail else "")
    text = without_addresses(text)
    return text if len(text) <= 300 else text[:297] + "..."


def classify(exc: BaseException) -> PollError:
    """Map directory, aiohttp and parsing errors to the core's reasons, with a safe message."""
    if isinstance(exc, PollError):
        return exc
    text = _describe(exc)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return PollError(Reason.TIMEOUT, "the expvar endpoint did not answer in time")
    if isinstance(exc, DirectoryError):
        return PollError(Reason.PERMISSION if exc.permission else Reason.CONNECT, text)
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return PollError(Reason.PROTOCOL, "the expvar endpoint closed the connection")
        return PollError(Reason.CONNECT, f"cannot reach the expvar endpoint: {text}")
    if isinstance(exc, ExpvarError | aiohttp.ClientError | ValueError):
        return PollError(Reason.PROTOCOL, text)
    return PollError(Reason.OTHER, text)


class LsmTarget:
    """One embedded store."""

    def __init__(self, config: LsmConfig, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        self.enabled = enabled(COLLECTORS, global_config.collectors_for(ADAPTER), config.collectors)
        if config.expvar_url is None:
            self.enabled -= {"expvar"}
        self.modules = {
            c.name: importlib.import_module(f"{__package__}.{c.name}")
            for c in COLLECTORS
            if c.name in self.enabled
        }
        self.errors = CollectorErrors(ADAPTER, config.name)
        self.http: aiohttp.ClientSession | None = None
        # One thread per target: a walk hung on a dead filesystem blocks only its own
        # target, and the next poll sees it still running instead of queueing.
        self.walker = ThreadPoolExecutor(1, thread_name_prefix=f"sparki-lsm-{config.name}")
        self.walks = WalkState()
        self._missing: tuple[str, ...] = ()

    async def poll(self) -> LsmSnapshot:
        if self.http is None and "expvar" in self.enabled:
            self.http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=max(self.timeout * 0.5, 0.1))
            )
        ctx = LsmContext(self.config, self.http, self.walker, self.walks)
        failures: dict[str, BaseException] = {}

        def step(name: str, module: Any) -> Any:
            async def go() -> Any:
                try:
                    return await module.collect(ctx)
                except Exception as exc:
                    failures[name] = exc
                    raise

            return go

        steps = [
            (c.name, step(c.name, self.modules[c.name]))
            for c in COLLECTORS
            if c.name in self.enabled
        ]
        # Nothing is fatal to the other collector: the directory is read even when the
        # host service is down, and the other way round.
        parts, runs = await run(steps, lambda exc: False, _describe)
        self.errors.report(runs)
        part = parts.get("expvar")
        if part is not None:
            self._note_missing(part.missing)
        ordered = tuple((name, parts[name]) for name, _ in steps if name in parts)
        snap = LsmSnapshot(
            self.config.name,
            self.config.engine,
            ordered,
            runs,
            part is not None and not part.missing,
            "expvar" in self.enabled,
        )
        if failures:
            first = classify(next(iter(failures.values())))
            raise PollError(first.reason, first.message, snapshot=snap)
        return snap

    def _note_missing(self, missing: tuple[str, ...]) -> None:
        """Log once per change which expected Badger variables the host does not publish."""
        if missing == self._missing:
            return
        self._missing = missing
        fields = kv(adapter=ADAPTER, target=self.config.name)
        if missing:
            fields["kv"]["missing"] = ",".join(missing)
            log.warning(
                "the host's expvar lacks Badger variables; their metrics are missing"
                " (sparki_capability expvar 0)",
                extra=fields,
            )
        else:
            log.info("the host's expvar has every expected Badger variable", extra=fields)

    async def reset(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None

    async def close(self) -> None:
        await self.reset()
        # A walk hung on a dead filesystem cannot be interrupted; do not wait for it.
        self.walker.shutdown(wait=False, cancel_futures=True)


def families(snap: LsmSnapshot) -> list[Metric]:
    out: list[Metric] = []
    for name, part in snap.parts:
        module = importlib.import_module(f"{__package__}.{name}")
        out.extend(module.families(snap.target, part))
    info = GaugeMetricFamily(
        "sparki_lsm_info",
        "Always 1; engine is the configured store engine",
        labels=["target", "engine"],
    )
    info.add_metric([snap.target, snap.engine], 1.0)
    out.append(info)
    cap = GaugeMetricFamily(
        "sparki_capability",
        "1 when the exporter can read this part of the server; 0 means its metrics are missing",
        labels=["adapter", "target", "capability"],
    )
    # Only where expvar is expected: without expvar_url there is nothing to miss, and a
    # capability at 0 would keep SparkiCapabilityMissing firing for a sound config.
    if snap.expvar_expected:
        cap.add_metric([ADAPTER, snap.target, "expvar"], 1.0 if snap.expvar else 0.0)
        out.append(cap)
    out.extend(collector_families(ADAPTER, snap.target, snap.runs))
    return out


def from_env(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """One target from LSM_DIRECTORY and LSM_ENGINE (+ LSM_EXPVAR_URL; SPARKI_LSM_TARGET
    names it)."""
    directory = env.get("LSM_DIRECTORY", "").strip()
    if not directory:
        return []
    target: dict[str, Any] = {
        "name": env.get("SPARKI_LSM_TARGET", "lsm"),
        "engine": env.get("LSM_ENGINE", "badger").strip(),
        "directory": directory,
    }
    url = env.get("LSM_EXPVAR_URL", "").strip()
    if url:
        target["expvar_url"] = url
    return [target]


def _target(config: Any, global_config: GlobalConfig) -> LsmTarget:
    return LsmTarget(config, global_config)
