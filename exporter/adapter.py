"""The contract every adapter package fulfils.

An adapter is one package under ``exporter.adapters`` whose ``spec`` module exposes
``ADAPTER``, an :class:`AdapterSpec`. The core discovers adapters by scanning that
package, so adding a storage backend means adding one package (and its tests); nothing
in the core changes. Each package has the same parts (see exporter/collector.py for
how its collectors are switched and run):

* a config model (a subclass of :class:`exporter.config.TargetConfig`);
* a target class whose ``poll()`` talks to the server and returns an immutable
  snapshot, keeping whatever state it needs between polls (connections, previous
  counter values for deltas);
* a ``families(snapshot)`` function turning a snapshot into client_python metric
  families, which the core renders once per snapshot.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.metrics_core import Metric

from .collector import CollectorSpec
from .config import GlobalConfig, TargetConfig


class Reason(enum.StrEnum):
    """Why a poll failed. A fixed set, so ``reason`` stays a bounded label."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    AUTH = "auth"
    PERMISSION = "permission"
    PROTOCOL = "protocol"
    OTHER = "other"


class PollError(Exception):
    """A poll failure with a classified reason and a message safe to show anywhere.

    Adapters raise it (or let the core classify other exceptions through
    ``AdapterSpec.classify``). The message must never contain a credential: the core
    redacts known secrets as a second line of defence, not the first.
    """

    def __init__(self, reason: Reason, message: str, snapshot: Any = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        # What the failed poll still measured (a synthetic probe's failed attempts, say).
        # The core exports it, fresh, while the target reads sparki_up 0: otherwise a
        # canary's failure counters would freeze exactly when the storage is down.
        self.snapshot = snapshot


class Target(Protocol):
    """One configured server, polled by the core on its own schedule."""

    async def poll(self) -> Any:
        """Talk to the server and return an immutable snapshot."""

    async def reset(self) -> None:
        """Drop connections after a failed or timed-out poll; the next poll reconnects."""

    async def close(self) -> None:
        """Release everything at shutdown."""


@dataclass(frozen=True)
class AdapterSpec:
    """What an adapter module tells the core about itself."""

    name: str
    config: type[TargetConfig]
    target: Callable[[Any, GlobalConfig], Target]
    families: Callable[[Any], Iterable[Metric]]
    classify: Callable[[BaseException], PollError]
    from_env: Callable[[Mapping[str, str]], list[dict[str, Any]]]
    description: str = ""
    # The adapter's collectors (from its driver-free catalog), in the order they run.
    collectors: tuple[CollectorSpec, ...] = ()
