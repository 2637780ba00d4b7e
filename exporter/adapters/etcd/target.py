"""The etcd target: one cluster, polled through its members' JSON gateways.

A poll runs the enabled collectors (canary, status, alarms) one after another under
the poll deadline. No member answering, a refused login and the deadline are fatal
(every collector would fail the same way); anything else degrades its collector alone.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ... import collector
from ...adapter import PollError, Reason
from ...config import GlobalConfig
from ...metrics import Metric
from .catalog import COLLECTORS
from .client import Gateway, GatewayError, Unreachable, classify
from .config import EtcdConfig
from .context import Context

DEADLINE_SHARE = 0.9  # of the poll timeout: leave the core time to record the outcome
# Of the poll timeout, what one call to one member may take: a hung member is given up
# on in time for the others (status) or for the next endpoint (canary, alarms).
CALL_SHARE = 0.45


@dataclass(frozen=True, slots=True)
class EtcdSnapshot:
    target: str
    parts: tuple[tuple[str, Any], ...]
    runs: tuple[collector.CollectorRun, ...]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{__package__}.{name}")


def _fatal(exc: BaseException) -> bool:
    if isinstance(exc, Unreachable | TimeoutError | PollError):
        return True
    return isinstance(exc, GatewayError) and exc.reason() is Reason.AUTH


def _describe(exc: BaseException) -> str:
    return classify(exc).message


class EtcdTarget:
    def __init__(self, config: EtcdConfig, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        names = collector.enabled(
            COLLECTORS, global_config.collectors_for("etcd"), config.collectors
        )
        self.collectors = [(c.name, _module(c.name)) for c in COLLECTORS if c.name in names]
        self.context = Context(config, Gateway(config), call_timeout=self.timeout * CALL_SHARE)
        self.errors = collector.CollectorErrors("etcd", config.name)

    async def poll(self) -> EtcdSnapshot:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout * DEADLINE_SHARE
        ctx = self.context

        def step(module: ModuleType) -> Callable[[], Awaitable[Any]]:
            return lambda: module.collect(ctx)

        try:
            async with asyncio.timeout_at(deadline):
                parts, runs = await collector.run(
                    [(name, step(module)) for name, module in self.collectors], _fatal, _describe
                )
        except PollError:
            raise
        except Exception as exc:
            raise classify(exc) from None
        self.errors.report(runs)
        ordered = tuple((name, parts[name]) for name, _ in self.collectors if name in parts)
        return EtcdSnapshot(self.config.name, ordered, runs)

    async def reset(self) -> None:
        await self.context.gateway.close()

    async def close(self) -> None:
        await self.context.gateway.close()


def families(snap: EtcdSnapshot) -> list[Metric]:
    out: list[Metric] = []
    for name, part in snap.parts:
        out.extend(_module(name).families(snap.target, part))
    out.extend(collector.families("etcd", snap.target, snap.runs))
    return out


def target(config: Any, global_config: GlobalConfig) -> EtcdTarget:
    return EtcdTarget(config, global_config)
