"""What a Redis collector gets for one node in one poll.

The target opens the node's connection, reads INFO once (every collector that needs an
INFO field reads it from here rather than asking again) and hands each enabled
collector a :class:`NodeContext`. ``call`` sends one command on the node's connection
and returns its reply; the poll deadline bounds it, as it bounds the whole poll.
``pipeline`` (optional) sends several commands in one round trip and returns their
replies in order, an error reply as the exception in its place (the key collectors
send hundreds of PTTL per poll; one round trip each would cost milliseconds).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class NodeContext:
    node: str  # the node's label value (its cluster id, short; "" for a single server)
    # The node's role label: "primary" or "replica" (CLUSTER NODES' flags in a cluster,
    # else INFO's role, normalised), "unknown" when neither says.
    role: str | None
    info: Mapping[str, str]  # this poll's INFO (default sections), parsed
    call: Callable[..., Awaitable[Any]]  # await ctx.call("XINFO", "GROUPS", key)
    # await ctx.pipeline(("PTTL", k1), ("PTTL", k2)) -> [reply or exception, ...]
    pipeline: Callable[..., Awaitable[list[Any]]] | None = None
