"""A Memcached target: one client-side distributed cache, that is, a list of nodes.

Memcached servers do not know each other; the client hashes keys over the list. So a
target is that list, and every node's series carry a ``node`` label: the node's
configured ``name``, else its position in the list (``0``, ``1``, ...). Never its
address: labels are public (dashboards, alerts, chat), addresses are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator

from ...config import Duration, Strict, TargetConfig, at_most
from .catalog import COLLECTORS
from .protocol import valid_key

NODE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
DEFAULT_PORT = 11211


def host_port(value: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare host (port 11211); never echoes the input."""
    text = value.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?", text)
    if match:
        host, port = match.group(1), match.group(2)
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    elif ":" in text:
        raise ValueError("an IPv6 address must be written [addr]:port")
    else:
        host, port = text, None
    if not host or any(c.isspace() or c in "/@?#" for c in host):
        raise ValueError("each node must be HOST:PORT")
    number = int(port) if port and port.isdigit() else DEFAULT_PORT if port is None else -1
    if not 0 < number < 65536:
        raise ValueError("the port must be a number from 1 to 65535")
    return host, number


class NodeConfig(Strict):
    """One memcached server of the target, with the label its series carry."""

    address: str = Field(description="HOST:PORT (port 11211 when left out)")
    name: str | None = Field(
        None, pattern=NODE_NAME, description="the `node` label; default: its index in the list"
    )

    @field_validator("address")
    @classmethod
    def _valid(cls, value: str) -> str:
        host_port(value)
        return value


class MemcachedConfig(TargetConfig):
    """A list of memcached nodes polled as one target (a client-side distributed cache)."""

    secret_fields = ("password",)
    known_collectors = tuple(c.name for c in COLLECTORS)

    nodes: list[str | NodeConfig] = Field(
        min_length=1,
        max_length=256,
        description="HOST:PORT strings or {address, name} entries, in the clients' order",
    )
    username: str | None = Field(
        None, pattern=r"^\S{1,250}$", description="ASCII auth user (memcached -Y)"
    )
    password: SecretStr | None = None
    socket_timeout: Duration | None = Field(
        None, description="connect timeout; defaults to half the poll timeout"
    )
    canary_key_prefix: str = Field(
        "sparki-canary", description="start of the canary's own key (set, get, delete)"
    )
    canary_ttl: Annotated[Duration, at_most(3600, "the canary key is meant to be short-lived")] = (
        Field(60.0, description="TTL of the canary key, so it expires even if a delete fails")
    )

    @field_validator("nodes")
    @classmethod
    def _valid_nodes(cls, value: list[str | NodeConfig]) -> list[str | NodeConfig]:
        for node in value:
            if isinstance(node, str):
                host_port(node)
        return value

    @field_validator("canary_key_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not valid_key(value) or len(value) > 100:
            raise ValueError("must be 1-100 printable characters without spaces")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MemcachedConfig:
        labels = [label for label, _ in self.node_list()]
        if len(set(labels)) != len(labels):
            raise ValueError("node names must be unique within a target")
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password (ASCII auth), or neither")
        return self

    def node_list(self) -> list[tuple[str, str]]:
        """(label, address) per node, in the configured order."""
        out = []
        for i, node in enumerate(self.nodes):
            if isinstance(node, str):
                out.append((str(i), node))
            else:
                out.append((node.name or str(i), node.address))
        return out


def from_env(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """A target from MEMCACHED_SERVERS (comma-separated HOST:PORT), with
    MEMCACHED_USERNAME / MEMCACHED_PASSWORD for ASCII auth."""
    nodes = [n.strip() for n in env.get("MEMCACHED_SERVERS", "").split(",") if n.strip()]
    if not nodes:
        return []
    target: dict[str, Any] = {
        "name": env.get("SPARKI_MEMCACHED_TARGET", "memcached"),
        "nodes": nodes,
    }
    if env.get("MEMCACHED_USERNAME"):
        target["username"] = env["MEMCACHED_USERNAME"]
    if env.get("MEMCACHED_PASSWORD"):
        target["password"] = env["MEMCACHED_PASSWORD"]
    return [target]
