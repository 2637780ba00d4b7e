"""What a collector gets for one poll: the gateway, the endpoints, state kept across polls."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .client import Gateway, Unreachable, is_connection_error
from .config import EtcdConfig


@dataclass
class Context:
    """Shared by one target's collectors; lives as long as the target."""

    config: EtcdConfig
    gateway: Gateway
    # Each collector's own state across polls (canary histograms, last leader seen).
    state: dict[str, Any] = field(default_factory=dict)
    preferred: int = 0  # index of the endpoint that answered last
    # How long one call to one member may take: a share of the poll deadline, so a
    # member that accepts connections and never answers costs part of one poll, and
    # the others still answer in it.
    call_timeout: float = 2.0

    async def call(self, endpoint: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One RPC on one member, bounded by ``call_timeout``."""
        async with asyncio.timeout(self.call_timeout):
            return await self.gateway.call(endpoint, path, body)

    async def call_any(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """One RPC on whichever member answers, the last good one first.

        Raises Unreachable (fatal for the poll) when none does: every collector would
        fail the same way; TimeoutError when the last one tried did not answer in time.
        """
        endpoints = self.config.endpoints
        order = [(self.preferred + i) % len(endpoints) for i in range(len(endpoints))]
        last: BaseException | None = None
        for index in order:
            try:
                reply = await self.call(endpoints[index], path, body)
            except TimeoutError as exc:
                last = exc
                continue
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                last = exc
                continue
            self.preferred = index
            return reply
        if isinstance(last, TimeoutError):
            raise TimeoutError("no endpoint answered in time")
        raise Unreachable(unreachable_text(last))


def unreachable_text(exc: BaseException | None) -> str:
    """'no endpoint answered: connection refused', naming no address."""
    from .client import classify

    detail = classify(exc).message if exc is not None else "no endpoint"
    return f"no endpoint answered ({detail})"
