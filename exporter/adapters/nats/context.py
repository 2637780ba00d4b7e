"""What a NATS collector gets in one poll."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from ...metrics import HistogramState
from .config import NatsConfig

if TYPE_CHECKING:
    from .connz import ClosedState


class MonitorError(Exception):
    """The monitoring endpoint answered with something other than the JSON we expect."""


@dataclass
class CanaryState:
    """What the canary accumulates across polls (its histogram and failure count)."""

    histogram: HistogramState
    failures: int = 0


@dataclass(frozen=True)
class NatsContext:
    """The target's config, its open client and monitoring session, and the canary state."""

    config: NatsConfig
    nc: Any  # nats.aio.client.Client; Any keeps this module free of nats-py
    http: aiohttp.ClientSession | None
    canary: CanaryState
    inbox: str
    canary_timeout: float
    closed: ClosedState  # connz: closures counted across polls

    async def get_json(self, path: str) -> dict[str, Any]:
        """GET a monitoring endpoint; the caller's collector degrades when it fails."""
        if self.http is None or self.config.monitor_url is None:
            raise MonitorError("monitor_url is not set")
        async with self.http.get(
            self.config.monitor_url + path, server_hostname=self.config.tls_server_name
        ) as resp:
            if resp.status != 200 and not path.startswith("/healthz"):
                raise MonitorError(f"{path.split('?')[0]} answered HTTP {resp.status}")
            data = await resp.json(content_type=None)
        if not isinstance(data, dict):
            raise MonitorError(f"{path.split('?')[0]} did not answer a JSON object")
        return data
