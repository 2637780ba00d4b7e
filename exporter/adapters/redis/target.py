"""Redis and Valkey adapter: LATENCY HISTOGRAM latency, memory, keyspace and clients.

One long-lived connection per server (per node, for a cluster), opened lazily and
dropped after any failure so the next poll reconnects. Connect and read timeouts are
half the poll timeout, and every poll also runs under a deadline shorter than the
core's, so a hung server costs one poll slot and never more.

The command histogram is derived, not passed through. ``LATENCY HISTOGRAM`` (Redis 7+,
Valkey) keeps, per command, cumulative call counts at power-of-two microsecond edges
and only lists edges whose count rose. Each poll maps every reply onto one fixed bucket
set (an edge that is missing carries the count below it; +Inf is the call count),
takes the difference with the previous reply and adds it to histograms the exporter
owns. The sum comes from ``INFO commandstats`` (``usec``), which Redis updates with the
same measurement. The first reply is only a baseline. A restart (new ``run_id``),
``CONFIG RESETSTAT`` (``total_commands_processed`` going backwards, or the exporter's
own previous ``LATENCY HISTOGRAM`` call missing from the reply) or any count going
backwards for one command turn the reply into counts since the reset, so nothing the
exporter exports can ever decrease or go negative. Only the top-N commands by calls get
their own ``cmd``; the rest are added to ``cmd="other"``; a command's histogram is kept
while it is outside the top-N, so moving in and out never makes a series decrease.

Optional sources (LATENCY, CONFIG) are capabilities: when refused the rest continues,
``sparki_capability`` says 0 and one log line per change says why and how to fix it.
A refused command is retried once a minute, not every poll, to keep ACL LOG quiet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import logging
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from redis import exceptions as rexc
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from ...adapter import PollError, Reason
from ...collector import CollectorErrors, CollectorRun, enabled
from ...collector import families as collector_families
from ...collector import run as run_collectors
from ...config import Duration, GlobalConfig, TargetConfig
from ...logs import kv
from ...metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from .catalog import COLLECTORS, KEYS_COLLECTORS
from .context import NodeContext
from .streams import StreamsConfig
from .ttl import TtlPolicy

log = logging.getLogger("sparki.redis")

# Upper edges (µs) that Redis 7 / Valkey report in LATENCY HISTOGRAM (hdr_histogram,
# log iteration from 1024 ns doubling; measured on 7.0, the top one is the 1 s clamp).
REDIS_EDGES_USEC = (
    1, 2, 4, 8, 16, 33, 66, 132, 264, 528, 1056, 2113, 4227, 8454, 16908, 33816,
    67633, 135266, 270532, 541065, 1073741,
)  # fmt: skip
# The exported bounds: Redis's own edges from 2 µs to 541 ms, so those are exact, plus
# 5 ms and 10 ms, the platform's warning and critical p95 lines. Redis has no edge
# there: they carry the count at the edge below (4.227 ms, 8.454 ms), a lower bound,
# so a p95 estimate can only err towards firing an alert, never towards missing one.
# Below 2 µs is noise; above 541 ms, Redis clamps at ~1.07 s, which +Inf covers.
COMMAND_BUCKETS_USEC = (
    2, 4, 8, 16, 33, 66, 132, 264, 528, 1056, 2113, 4227, 5000, 8454, 10000, 16908,
    33816, 67633, 135266, 270532, 541065,
)  # fmt: skip
COMMAND_BUCKETS = tuple(usec / 1e6 for usec in COMMAND_BUCKETS_USEC)
PROBE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

CAPABILITIES = ("latency_histogram", "config")
# How long to wait before retrying a command the server refused (permission, unknown).
RECHECK_AFTER = 60.0
# Share of the poll timeout a poll may use before it gives up on a node by itself.
DEADLINE_SHARE = 0.9
CLIENT_NAME = "sparki-exporter"
# redis-py sends CLIENT SETINFO on connect unless told not to; a monitoring user may not
# be allowed it (each refusal lands in ACL LOG), and Redis 7.0 does not know it.
NO_CLIENT_SETINFO: dict[str, Any] = (
    {"driver_info": None}
    if "driver_info" in inspect.signature(AbstractConnection.__init__).parameters
    else {"lib_name": None, "lib_version": None}
)
OTHER = "other"
# How LATENCY HISTOGRAM names the exporter's own call to it (see _own_call_missing).
OWN_COMMAND = "latency|histogram"

FIXES = {
    ("latency_histogram", "permission"): "ACL SETUSER <user> +latency|histogram",
    ("latency_histogram", "unsupported"): "needs Redis 7+ or Valkey with LATENCY enabled "
    "(managed services may block it); the PING probe histogram still measures latency",
    ("latency_histogram", "disabled"): "CONFIG SET latency-tracking yes "
    "(and set latency-tracking yes in redis.conf)",
    ("config", "permission"): "ACL SETUSER <user> +config|get",
    ("config", "unsupported"): "CONFIG is disabled or renamed (usual on managed services); "
    "only the latency-tracking check is lost, memory and clients come from INFO",
}
WHAT_IS_LOST = {
    "latency_histogram": "LATENCY HISTOGRAM unavailable: command latency histograms are not "
    "updated, everything else continues",
    "config": "CONFIG GET unavailable: cannot check latency-tracking, everything else continues",
}


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect, parsed from the URL; never logged or exported."""

    tls: bool
    host: str = ""
    port: int = 6379
    path: str = ""  # unix socket
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> Endpoint:
    """Parse redis://, rediss:// or unix:// without ever quoting the input in an error."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid redis://, rediss:// or unix:// URL") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix://")
    if parts.query or parts.fragment:
        raise ValueError("URL options (?...) are not supported: use the target's keys instead")
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs a socket path, e.g. unix:///run/redis/redis.sock")
        return Endpoint(False, path=parts.path, username=user, password=password)
    if not parts.hostname:
        raise ValueError("the URL has no host")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError("the URL path may only be a database number")
    return Endpoint(
        parts.scheme == "rediss",
        host=parts.hostname,
        port=port or 6379,
        username=user,
        password=password,
    )


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise ValueError("each seed node must be HOST:PORT")
    return host.strip("[]"), int(port)


class RedisConfig(TargetConfig):
    """One Redis or Valkey server, or one Redis Cluster (``cluster: true``)."""

    secret_fields = ("password",)
    known_collectors = tuple(c.name for c in COLLECTORS)

    url: str = Field(
        "redis://localhost:6379",
        description="redis://host:port, rediss://host:port (TLS) or unix:///path",
    )
    username: str | None = Field(None, description="ACL user; overrides a user in the URL")
    password: SecretStr | None = None
    tls_ca_file: str | None = Field(None, description="CA bundle to verify the server with")
    tls_cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    tls_key_file: str | None = Field(None, description="client key (mutual TLS)")
    tls_insecure_skip_verify: bool = False
    cluster: bool = Field(False, description="discover nodes with CLUSTER NODES, poll each")
    seed_nodes: tuple[str, ...] = Field(
        (), description="more HOST:PORT entry points for cluster discovery"
    )
    commands_top_n: int = Field(
        30, ge=0, le=1000, description="commands with their own cmd label; the rest is other"
    )
    socket_timeout: Duration | None = Field(
        None, description="connect and read timeout; defaults to half the poll timeout"
    )
    ttl_policy: TtlPolicy | None = Field(
        None, description="TTL conformance: key patterns and their max TTL (ttl collector)"
    )
    streams: StreamsConfig | None = Field(
        None, description="stream key patterns to watch, e.g. build:*:logs (streams collector)"
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_url(value)
        return value

    @field_validator("seed_nodes")
    @classmethod
    def _valid_seeds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for seed in value:
            _host_port(seed)
        return value

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RedisConfig:
        endpoint = parse_url(self.url)
        tls_options = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        if any(tls_options) and not endpoint.tls:
            raise ValueError("tls_* options need a rediss:// url")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        if self.cluster and endpoint.path:
            raise ValueError("cluster: true needs a redis:// or rediss:// url, not unix://")
        if self.seed_nodes and not self.cluster:
            raise ValueError("seed_nodes is only used with cluster: true")
        return self

    def extra_secrets(self) -> list[str]:
        password = parse_url(self.url).password
        return [password] if password else []


def from_env(env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Targets from the platform's variables: REDIS_HOST (+ REDIS_PORT, REDIS_PASSWORD,
    REDIS_USERNAME, REDIS_TLS) and/or REDIS_CLUSTER_NODES (comma-separated HOST:PORT)."""
    scheme = "rediss" if env.get("REDIS_TLS", "").lower() in ("1", "true", "yes") else "redis"
    common: dict[str, Any] = {}
    if env.get("REDIS_USERNAME"):
        common["username"] = env["REDIS_USERNAME"]
    if env.get("REDIS_PASSWORD"):
        common["password"] = env["REDIS_PASSWORD"]
    targets: list[dict[str, Any]] = []
    host = env.get("REDIS_HOST", "").strip()
    if host:
        if "://" in host:
            url = host
        else:
            shown = f"[{host}]" if ":" in host else host
            url = f"{scheme}://{shown}:{env.get('REDIS_PORT', '6379').strip()}"
        targets.append({"name": env.get("SPARKI_REDIS_TARGET", "redis"), "url": url, **common})
    nodes = [n.strip() for n in env.get("REDIS_CLUSTER_NODES", "").split(",") if n.strip()]
    if nodes:
        first, *rest = nodes
        targets.append(
            {
                "name": env.get("SPARKI_REDIS_CLUSTER_TARGET", "redis-cluster"),
                "url": first if "://" in first else f"{scheme}://{first}",
                "cluster": True,
                "seed_nodes": rest,
                **common,
            }
        )
    return targets


# --- parsing replies -------------------------------------------------------------------


def parse_info(text: str) -> dict[str, str]:
    """INFO's ``key:value`` lines; section headers and blank lines skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def parse_fields(value: str) -> dict[str, str]:
    """``calls=5,usec=20,...`` into a dict."""
    out: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if sep:
            out[key] = val
    return out


def _pairs(reply: Any) -> list[tuple[Any, Any]]:
    """A RESP2 flat list or a RESP3 map, as (key, value) pairs."""
    if isinstance(reply, dict):
        return list(reply.items())
    if isinstance(reply, list | tuple):
        return list(zip(reply[0::2], reply[1::2], strict=False))
    raise PollError(Reason.PROTOCOL, "unexpected reply shape from LATENCY HISTOGRAM")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def parse_latency_histogram(reply: Any) -> dict[str, tuple[int, dict[int, int]]]:
    """Per command: (calls, {edge µs: cumulative count}) from LATENCY HISTOGRAM."""
    out: dict[str, tuple[int, dict[int, int]]] = {}
    for name, body in _pairs(reply):
        command = _text(name).lower()
        fields = {_text(k): v for k, v in _pairs(body)}
        edges = {
            _count(k, command, "histogram_usec edge"): _count(v, command, "histogram_usec count")
            for k, v in _pairs(fields.get("histogram_usec", []))
        }
        out[command] = (_count(fields.get("calls", 0), command, "calls"), edges)
    return out


def _count(value: Any, command: str, field: str) -> int:
    """A non-negative integer from a reply, or a protocol error naming the field.

    A server or proxy that answers LATENCY HISTOGRAM with something else must fail
    the poll with a message an operator can act on, not a bare TypeError.
    """
    try:
        number = int(value.decode(errors="replace") if isinstance(value, bytes) else value)
    except (TypeError, ValueError, OverflowError):
        number = -1
    if number < 0 or isinstance(value, bool | float):
        raise PollError(
            Reason.PROTOCOL,
            f"LATENCY HISTOGRAM: {field} of {command!r} is {str(value)[:40]!r}, "
            "not a non-negative integer",
        )
    return number


def fill_buckets(
    edges: Mapping[int, int], calls: int, bounds_usec: Sequence[int] = COMMAND_BUCKETS_USEC
) -> tuple[int, ...]:
    """Cumulative counts at every bound, then +Inf (= calls), gaps filled.

    A bound takes the count of the largest Redis edge at or below it (a missing edge
    did not rise, so it carries the count below it); the result never decreases.
    """
    items = sorted(edges.items())
    out: list[int] = []
    i = running = 0
    for bound in bounds_usec:
        while i < len(items) and items[i][0] <= bound:
            running = max(running, items[i][1])
            i += 1
        out.append(running)
    top = max([running, calls, *(c for _, c in items)])
    out.append(top)
    return tuple(out)


def _per_bucket(cumulative: Sequence[int]) -> list[int]:
    return [c - (cumulative[i - 1] if i else 0) for i, c in enumerate(cumulative)]


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One line of CLUSTER NODES."""

    id: str
    host: str
    port: int
    role: str  # primary, replica or unknown
    myself: bool


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """Nodes with a usable address; handshake and noaddr entries are skipped."""
    nodes: list[ClusterNode] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        node_id, address, flags = parts[0], parts[1], set(parts[2].split(","))
        if flags & {"handshake", "noaddr"}:
            continue
        hostport = address.split("@", 1)[0]
        announced = address.split(",", 1)[1] if "," in address else ""
        host, _, port = hostport.rpartition(":")
        if not port.isdigit() or int(port) == 0:
            continue
        role = "primary" if "master" in flags else "replica" if "slave" in flags else "unknown"
        nodes.append(
            ClusterNode(node_id, announced or host.strip("[]"), int(port), role, "myself" in flags)
        )
    return nodes


def short_ids(ids: Iterable[str], minimum: int = 8) -> dict[str, str]:
    """The shortest prefix of each node id (at least ``minimum``) that is unique."""
    ids = sorted(set(ids))
    out: dict[str, str] = {}
    for node_id in ids:
        length = minimum
        while length < len(node_id) and any(
            o != node_id and o[:length] == node_id[:length] for o in ids
        ):
            length += 1
        out[node_id] = node_id[:length]
    return out


# --- the command histogram ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawCommand:
    """One command's counters as Redis reported them at one poll."""

    calls: int
    cumulative: tuple[int, ...]  # at each bound, then +Inf
    usec: int


class _Accumulated:
    """A histogram owned by the exporter: per-bucket counts and a sum, only ever added to."""

    __slots__ = ("counts", "usec")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.usec = 0  # the sum in whole microseconds, as Redis counts it: no float drift

    def add(self, per_bucket: Sequence[int], usec: int) -> None:
        for i, count in enumerate(per_bucket):
            self.counts[i] += count
        self.usec += usec

    def snapshot(self, bounds: tuple[float, ...]) -> HistogramSnapshot:
        return HistogramSnapshot(bounds, tuple(self.counts), self.usec / 1e6)


class CommandHistograms:
    """Per-command histograms of one server, accumulated from LATENCY HISTOGRAM deltas."""

    def __init__(self, top_n: int, bounds_usec: Sequence[int] = COMMAND_BUCKETS_USEC) -> None:
        self.top_n = top_n
        self.bounds_usec = tuple(bounds_usec)
        self.bounds = tuple(b / 1e6 for b in self.bounds_usec)
        self.previous: dict[str, RawCommand] | None = None
        self.ranking: dict[str, int] = {}  # latest known cumulative calls per command
        self.acc: dict[str, _Accumulated] = {}
        self.other = _Accumulated(len(self.bounds) + 1)
        self.other_used = False
        self.top: tuple[str, ...] = ()

    def raw(
        self, histogram: Mapping[str, tuple[int, Mapping[int, int]]], usec: Mapping[str, int]
    ) -> dict[str, RawCommand]:
        previous = self.previous or {}
        out: dict[str, RawCommand] = {}
        for cmd, (calls, edges) in histogram.items():
            # No commandstats line yet (a race): keep the old sum; the next poll catches up.
            fallback = previous[cmd].usec if cmd in previous else 0
            out[cmd] = RawCommand(
                calls, fill_buckets(edges, calls, self.bounds_usec), usec.get(cmd, fallback)
            )
        return out

    def update(self, current: Mapping[str, RawCommand], reset: bool) -> None:
        """Add what happened since the previous reply; ``reset``: the server's stats restarted."""
        for cmd, raw in current.items():
            self.ranking[cmd] = raw.calls
        ranked = sorted(self.ranking, key=lambda c: (-self.ranking[c], c))
        top = set(ranked[: self.top_n])
        if len(ranked) > len(top):
            self.other_used = True
        size = len(self.bounds) + 1
        for cmd in top:
            self.acc.setdefault(cmd, _Accumulated(size))
        if self.previous is not None:  # the very first reply is only a baseline
            for cmd, raw in current.items():
                delta = self._delta(raw, None if reset else self.previous.get(cmd))
                if delta is None:
                    continue
                per_bucket, usec = delta
                (self.acc[cmd] if cmd in top else self.other).add(per_bucket, usec)
        self.previous = dict(current)
        self.top = tuple(sorted(top))

    @staticmethod
    def _delta(raw: RawCommand, prev: RawCommand | None) -> tuple[list[int], int] | None:
        if prev is not None:
            per_bucket = _per_bucket(
                [a - b for a, b in zip(raw.cumulative, prev.cumulative, strict=True)]
            )
            usec = raw.usec - prev.usec
            if raw.calls >= prev.calls and usec >= 0 and min(per_bucket) >= 0:
                return (per_bucket, usec) if any(per_bucket) or usec else None
        # New command, or its counters went backwards (reset): all of it is new.
        per_bucket = _per_bucket(raw.cumulative)
        if min(per_bucket) < 0:  # cannot happen with fill_buckets; never export it
            return None
        return per_bucket, max(0, raw.usec)

    def series(self) -> tuple[tuple[str, HistogramSnapshot], ...]:
        out = [(cmd, self.acc[cmd].snapshot(self.bounds)) for cmd in self.top]
        if self.other_used:
            out.append((OTHER, self.other.snapshot(self.bounds)))
        return tuple(out)


# --- snapshots -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """What one poll learned from one server (or node, in a cluster)."""

    node: str  # short node id in a cluster, "" for a single server
    role: str
    up: bool
    version: str = ""
    server: str = "redis"
    uptime_seconds: float = 0.0
    used_memory: int = 0
    maxmemory: int = 0
    system_memory: int | None = None  # INFO total_system_memory (Redis 3.2+)
    maxclients: int | None = None
    connected_clients: int = 0
    evicted_keys: int = 0
    expired_keys: int = 0
    keyspace_hits: int = 0
    keyspace_misses: int = 0
    commands_processed: int = 0
    rejected_connections: int = 0
    db_keys: tuple[tuple[str, int], ...] = ()
    probe: HistogramSnapshot | None = None
    commands: tuple[tuple[str, HistogramSnapshot], ...] = ()
    commands_tracked: int | None = None  # unknown without LATENCY HISTOGRAM
    capabilities: tuple[tuple[str, bool], ...] = ()
    # The design key collectors (ttl, streams): (name, part) and how each did.
    parts: tuple[tuple[str, Any], ...] = ()
    runs: tuple[CollectorRun, ...] = ()


@dataclass(frozen=True, slots=True)
class RedisSnapshot:
    target: str
    cluster: bool
    nodes: tuple[NodeSnapshot, ...]
    cluster_state_ok: bool | None = None
    capabilities: tuple[tuple[str, bool], ...] = ()


# --- talking to one server -------------------------------------------------------------


class _Capability:
    """Whether an optional command works on a node, and when it was last tried."""

    __slots__ = ("checked_at", "problem")

    def __init__(self) -> None:
        self.problem: str | None = None
        self.checked_at = -RECHECK_AFTER

    def due(self, now: float) -> bool:
        if self.problem in (None, "disabled"):
            return True
        return now - self.checked_at >= RECHECK_AFTER

    def refused(self, exc: BaseException, now: float) -> None:
        text = str(exc).lower()
        if isinstance(exc, rexc.NoPermissionError) or text.startswith("noperm"):
            self.problem = "permission"
        elif "unknown command" in text or "unknown subcommand" in text:
            self.problem = "unsupported"
        else:
            self.problem = "error"
        self.checked_at = now


class RedisNode:
    """One connection to one server plus everything derived from it across polls."""

    def __init__(self, target: RedisTarget, host: str, port: int) -> None:
        self.target = target
        self.host = host
        self.port = port
        self.conn: AbstractConnection | None = None
        self.named = False
        self.pinned = False
        self.probe = HistogramState(PROBE_BUCKETS)
        self.commands = CommandHistograms(target.config.commands_top_n)
        self.run_id: str | None = None
        self.total_commands: int | None = None
        self.tracking_off = False  # latency-tracking was "no" at the previous poll
        self.caps = {name: _Capability() for name in CAPABILITIES}

    def move(self, host: str, port: int) -> None:
        """The node's address changed (a pod moved, say): reconnect there.

        A node first reached through a configured address keeps that address: it is
        what TLS certificates name, and the cluster may only announce an IP.
        """
        if not self.pinned and (host, port) != (self.host, self.port):
            self.host, self.port = host, port
            self.drop()

    def adopt(self, other: RedisNode) -> None:
        """Take over another node object's connection and address (same server)."""
        self.drop()
        self.conn, self.named, other.conn = other.conn, other.named, None
        self.host, self.port, self.pinned = other.host, other.port, True

    def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.target.closing.append(conn)

    async def reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.disconnect()

    async def _connection(self) -> AbstractConnection:
        if self.conn is None:
            self.conn = self.target.connection(self.host, self.port)
            self.named = False
        if not self.conn.is_connected:
            self.named = False
            await self.conn.connect()  # type: ignore[no-untyped-call]
        return self.conn

    async def pipeline(self, *commands: tuple[str, ...]) -> list[Any]:
        """Send commands in one round trip; error replies come back as exceptions."""
        conn = await self._connection()
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        out: list[Any] = []
        for _ in commands:
            try:
                out.append(await conn.read_response())
            except rexc.ResponseError as exc:  # the connection is still in step
                out.append(exc)
        return out

    async def ping(self) -> None:
        conn = await self._connection()
        start = time.perf_counter()
        await conn.send_command("PING", check_health=False)
        await conn.read_response()
        self.probe.observe(time.perf_counter() - start)

    async def poll(self, node: str, role: str | None) -> NodeSnapshot:
        await self.ping()
        now = time.monotonic()
        latency, config = self.caps["latency_histogram"], self.caps["config"]
        commands: list[tuple[str, ...]] = []
        if not self.named:
            commands.append(("CLIENT", "SETNAME", CLIENT_NAME))
        commands += [("INFO",), ("INFO", "commandstats")]
        want_latency, want_config = latency.due(now), config.due(now)
        if want_latency:
            commands.append(("LATENCY", "HISTOGRAM"))
        if want_config:
            commands.append(("CONFIG", "GET", "latency-tracking"))
        replies = await self.pipeline(*commands)
        if not self.named:
            self.named = True  # refused or not, do not ask again on this connection
            replies.pop(0)
        for reply in replies[:2]:
            if isinstance(reply, Exception):
                raise reply
        info = parse_info(_text(replies[0]))
        usec = {
            key[len("cmdstat_") :].lower(): int(float(parse_fields(value).get("usec", "0")))
            for key, value in parse_info(_text(replies[1])).items()
            if key.startswith("cmdstat_")
        }
        rest = replies[2:]
        latency_reply = rest.pop(0) if want_latency else None
        tracking: str | None = None
        if want_config:
            config_reply = rest.pop(0)
            if isinstance(config_reply, Exception):
                config.refused(config_reply, now)
            else:
                config.problem = None
                values = dict(_pairs(config_reply))
                found = values.get("latency-tracking")
                tracking = _text(found) if found is not None else None
        if want_latency:
            if isinstance(latency_reply, Exception):
                latency.refused(latency_reply, now)
            else:
                disabled = tracking == "no"
                latency.problem = "disabled" if disabled else None
                # Our previous call went uncounted if tracking was off then (or is now).
                own_counted = not (disabled or self.tracking_off)
                self.tracking_off = disabled
                self._apply_latency(info, parse_latency_histogram(latency_reply), usec, own_counted)
        snapshot = self._snapshot(node, role, info)
        if not self.target.collectors:
            return snapshot
        ctx = NodeContext(node, role, info, self.call, self.pipeline)
        steps = [(name, _step(c, ctx)) for name, c in self.target.collectors.items()]
        parts, runs = await run_collectors(steps, _fatal, lambda e: _first_line(e))
        return dataclasses.replace(snapshot, parts=tuple(parts.items()), runs=runs)

    async def call(self, *args: Any) -> Any:
        """One command and its reply (a collector's NodeContext.call)."""
        conn = await self._connection()
        await conn.send_command(*args, check_health=False)
        return await conn.read_response()

    def _apply_latency(
        self,
        info: Mapping[str, str],
        histogram: Mapping[str, tuple[int, Mapping[int, int]]],
        usec: Mapping[str, int],
        own_counted: bool = True,
    ) -> None:
        run_id = info.get("run_id")
        total = _int(info.get("total_commands_processed"))
        reset = (
            (self.run_id is not None and run_id != self.run_id)
            or (self.total_commands is not None and total < self.total_commands)
            or (own_counted and _own_call_missing(self.commands.previous, histogram))
        )
        self.commands.update(self.commands.raw(histogram, usec), reset)
        self.run_id, self.total_commands = run_id, total

    def _snapshot(self, node: str, role: str | None, info: Mapping[str, str]) -> NodeSnapshot:
        if role is None:
            role = {"master": "primary", "slave": "replica"}.get(info.get("role", ""), "unknown")
        valkey = info.get("server_name") == "valkey" or "valkey_version" in info
        dbs = []
        for key, value in info.items():
            if key.startswith("db") and key[2:].isdigit():
                dbs.append((key[2:], _int(parse_fields(value).get("keys"))))
        latency_ok = self.caps["latency_histogram"].problem is None
        return NodeSnapshot(
            node=node,
            role=role,
            up=True,
            version=info.get("valkey_version") or info.get("redis_version", "unknown"),
            server="valkey" if valkey else "redis",
            uptime_seconds=float(_int(info.get("uptime_in_seconds"))),
            used_memory=_int(info.get("used_memory")),
            maxmemory=_int(info.get("maxmemory")),  # 0 when unset, and exported as 0
            system_memory=_int(info["total_system_memory"])
            if "total_system_memory" in info
            else None,
            maxclients=_int(info["maxclients"]) if "maxclients" in info else None,
            connected_clients=_int(info.get("connected_clients")),
            evicted_keys=_int(info.get("evicted_keys")),
            expired_keys=_int(info.get("expired_keys")),
            keyspace_hits=_int(info.get("keyspace_hits")),
            keyspace_misses=_int(info.get("keyspace_misses")),
            commands_processed=_int(info.get("total_commands_processed")),
            rejected_connections=_int(info.get("rejected_connections")),
            db_keys=tuple(sorted(dbs, key=lambda d: int(d[0]))),
            probe=self.probe.snapshot(),
            commands=self.commands.series(),
            commands_tracked=len(self.commands.previous or {}) if latency_ok else None,
            capabilities=tuple((n, self.caps[n].problem is None) for n in CAPABILITIES),
        )


def _own_call_missing(
    previous: Mapping[str, RawCommand] | None,
    histogram: Mapping[str, tuple[int, Mapping[int, int]]],
) -> bool:
    """Whether our previous LATENCY HISTOGRAM is missing from this reply: a CONFIG RESETSTAT.

    Redis counts a command after it replies, so the reply we kept does not include the
    call that produced it; the next reply must show at least one more. Fewer means the
    statistics were reset in between, however much traffic followed (on a young server,
    more calls after a reset than before leave every other count, and the total, higher
    than at the previous poll). A reply identical to the previous one is not a reset:
    with ``latency-tracking no`` nothing is counted, our own call included.
    """
    if previous is None:
        return False
    before = previous[OWN_COMMAND].calls if OWN_COMMAND in previous else 0
    now = histogram[OWN_COMMAND][0] if OWN_COMMAND in histogram else 0
    if now > before:
        return False
    return histogram.keys() != previous.keys() or any(
        previous[cmd].calls != calls for cmd, (calls, _) in histogram.items()
    )


def _step(collector: Any, ctx: NodeContext) -> Any:
    async def step() -> Any:
        return await collector.collect(ctx)

    return step


def _fatal(exc: BaseException) -> bool:
    """A lost connection or the deadline fails the poll; anything else one collector."""
    return isinstance(
        exc, rexc.ConnectionError | rexc.TimeoutError | TimeoutError | OSError | PollError
    )


def merged_runs(nodes: Sequence[NodeSnapshot]) -> tuple[CollectorRun, ...]:
    """One run per collector for the target: ok where it was ok on every node polled."""
    out: dict[str, CollectorRun] = {}
    for node in nodes:
        for r in node.runs:
            seen = out.get(r.name)
            if seen is None:
                out[r.name] = r
            else:
                out[r.name] = CollectorRun(
                    r.name, seen.ok and r.ok, max(seen.duration, r.duration), seen.error or r.error
                )
    return tuple(out[name] for name in sorted(out))


def _int(value: str | None) -> int:
    try:
        return int(float(value)) if value else 0
    except ValueError:
        return 0


# --- the target ----------------------------------------------------------------------


class RedisTarget:
    """Polls one server, or every node of one cluster."""

    def __init__(self, config: RedisConfig, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        self.socket_timeout = config.socket_timeout or self.timeout / 2
        self.endpoint = parse_url(config.url)
        self.username = config.username or self.endpoint.username
        self.password = (
            config.password.get_secret_value() if config.password else self.endpoint.password
        )
        self.nodes: dict[str, RedisNode] = {}  # by cluster node id; "" for a single server
        self.labels: dict[str, str] = {}  # node id -> short id
        self.roles: dict[str, str] = {}
        self.seed_id: str | None = None
        self.closing: list[AbstractConnection] = []
        self.reported: dict[str, str | None] = dict.fromkeys(CAPABILITIES)
        # The design key collectors this target runs (the other sources are not yet
        # collectors): each module imported only when enabled.
        names = enabled(KEYS_COLLECTORS, global_config.collectors_for("redis"), config.collectors)
        self.collectors: dict[str, Any] = {
            spec.name: importlib.import_module(f"{__package__}.{spec.name}").Collector(config)
            for spec in KEYS_COLLECTORS
            if spec.name in names
        }
        self.collector_errors = CollectorErrors("redis", config.name)
        self.node_errors: dict[str, str] = {}
        self.addresses = {self.endpoint.host} - {""}

    # -- connections --------------------------------------------------------------------

    def connection(self, host: str, port: int) -> AbstractConnection:
        self.addresses.add(host)
        common: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_timeout,
            "decode_responses": True,
            # Keys are bytes; one that is not UTF-8 must not fail a SCAN reply, and must
            # round-trip into the PTTL that follows (the ttl and streams collectors).
            "encoding_errors": "surrogateescape",
            **NO_CLIENT_SETINFO,
        }
        if self.endpoint.path:
            return UnixDomainSocketConnection(path=self.endpoint.path, **common)
        if self.endpoint.tls:
            skip = self.config.tls_insecure_skip_verify
            return SSLConnection(
                host=host,
                port=port,
                ssl_ca_certs=self.config.tls_ca_file,
                ssl_certfile=self.config.tls_cert_file,
                ssl_keyfile=self.config.tls_key_file,
                ssl_cert_reqs="none" if skip else "required",
                ssl_check_hostname=not skip,
                **common,
            )
        return Connection(host=host, port=port, **common)

    async def _flush_closing(self) -> None:
        conns, self.closing = self.closing, []
        for conn in conns:
            try:
                await conn.disconnect()
            except Exception:  # noqa: S112 (best effort; the socket is being dropped)
                continue

    async def reset(self) -> None:
        for node in list(self.nodes.values()):
            await node.reset()
        await self._flush_closing()

    async def close(self) -> None:
        await self.reset()

    # -- errors -------------------------------------------------------------------------

    def error(self, exc: BaseException) -> PollError:
        """A classified error whose message names no address and no credential."""
        if isinstance(exc, TimeoutError):  # our own deadline, not a socket timeout
            error = PollError(Reason.TIMEOUT, "no reply within the poll deadline")
        else:
            error = classify(exc)
        message = error.message
        for secret in (self.password, self.config.url):
            if secret:
                message = message.replace(secret, "<redacted>")
        for host in sorted(self.addresses, key=len, reverse=True):
            message = message.replace(host, "<address>")
        return PollError(error.reason, message)

    # -- poll -----------------------------------------------------------------------------

    async def poll(self) -> RedisSnapshot:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout * DEADLINE_SHARE
        try:
            await self._flush_closing()
            if self.config.cluster:
                return await self._poll_cluster(deadline)
            node = self.nodes.get("")
            if node is None:
                node = self.nodes[""] = RedisNode(self, self.endpoint.host, self.endpoint.port)
            try:
                async with asyncio.timeout_at(deadline):
                    reading = await node.poll("", None)
            except BaseException:
                await node.reset()
                raise
            self._report_capabilities([reading])
            self.collector_errors.report(reading.runs)
            return RedisSnapshot(
                self.config.name, False, (reading,), capabilities=reading.capabilities
            )
        except PollError:
            raise
        except Exception as exc:
            raise self.error(exc) from None

    async def _discover(self, deadline: float) -> tuple[list[ClusterNode], bool | None, RedisNode]:
        """CLUSTER NODES from the seed's node, else any known node, else a configured seed."""
        candidates: list[RedisNode] = []
        if self.seed_id in self.nodes:
            candidates.append(self.nodes[self.seed_id])
        candidates += [n for i, n in sorted(self.nodes.items()) if i != self.seed_id]
        seeds = [(self.endpoint.host, self.endpoint.port)]
        seeds += [_host_port(s) for s in self.config.seed_nodes]
        known = {(n.host, n.port) for n in candidates}
        fresh: list[RedisNode | tuple[str, int]] = [s for s in seeds if s not in known]
        last: BaseException | None = None
        for candidate in [*candidates, *fresh]:
            # Configured seeds get a node object (and a connection) only when reached.
            if isinstance(candidate, RedisNode):
                node = candidate
            else:
                node = RedisNode(self, candidate[0], candidate[1])
            try:
                async with asyncio.timeout_at(deadline):
                    nodes_reply, info_reply = await node.pipeline(
                        ("CLUSTER", "NODES"), ("CLUSTER", "INFO")
                    )
                if isinstance(nodes_reply, Exception):
                    if "cluster support disabled" in str(nodes_reply).lower():
                        raise PollError(
                            Reason.PROTOCOL,
                            "cluster: true, but the server runs with cluster mode disabled",
                        )
                    raise nodes_reply
                topology = parse_cluster_nodes(_text(nodes_reply))
                state_ok = (
                    None  # refused (ACL without cluster|info): unknown, so not exported
                    if isinstance(info_reply, Exception)
                    else parse_info(_text(info_reply)).get("cluster_state") == "ok"
                )
                return topology, state_ok, node
            except PollError:
                await node.reset()
                raise
            except Exception as exc:
                last = exc
                await node.reset()
                if loop_time() >= deadline:
                    break
        raise last if last is not None else PollError(Reason.CONNECT, "no cluster node reachable")

    def _sync(self, topology: list[ClusterNode], via: RedisNode) -> None:
        """Follow nodes that joined, left or moved; adopt a fresh seed connection."""
        me = next((n for n in topology if n.myself), None)
        if via not in self.nodes.values():  # reached through a configured address
            via.pinned = True
            if me is None:
                via.drop()
            elif me.id in self.nodes:
                self.nodes[me.id].adopt(via)
            else:
                self.nodes[me.id] = via
            if me is not None:
                self.seed_id = me.id
        current: dict[str, ClusterNode] = {}
        for info in topology:
            node = self.nodes.get(info.id)
            if node is None:
                host = info.host or (via.host if info.myself else "")
                if not host:
                    continue
                self.nodes[info.id] = RedisNode(self, host, info.port)
            elif info.host:
                node.move(info.host, info.port)
            current[info.id] = info
        labels = short_ids(current)
        for node_id in [i for i in self.nodes if i not in current]:
            self.nodes.pop(node_id).drop()
            self.node_errors.pop(node_id, None)
            log.info(
                "cluster node left",
                extra=kv(target=self.config.name, node=self.labels.get(node_id, node_id[:8])),
            )
        for node_id, info in current.items():
            if node_id not in self.labels:
                log.info(
                    "cluster node joined",
                    extra=kv(target=self.config.name, node=labels[node_id], role=info.role),
                )
        self.labels = labels
        self.roles = {i: n.role for i, n in current.items()}

    async def _poll_cluster(self, deadline: float) -> RedisSnapshot:
        topology, state_ok, via = await self._discover(deadline)
        self._sync(topology, via)
        await self._flush_closing()
        ids = sorted(self.nodes, key=lambda i: self.labels[i])
        readings = await asyncio.gather(*(self._poll_node(i, deadline) for i in ids))
        self._report_capabilities([r for r in readings if r.up])
        self.collector_errors.report(merged_runs([r for r in readings if r.up]))
        caps = tuple(
            (name, all(dict(r.capabilities)[name] for r in readings if r.up))
            for name in CAPABILITIES
        )
        return RedisSnapshot(
            self.config.name,
            True,
            tuple(readings),
            cluster_state_ok=state_ok,
            capabilities=caps if any(r.up for r in readings) else (),
        )

    async def _poll_node(self, node_id: str, deadline: float) -> NodeSnapshot:
        node, label, role = self.nodes[node_id], self.labels[node_id], self.roles[node_id]
        try:
            async with asyncio.timeout_at(deadline):
                reading = await node.poll(label, role)
        except Exception as exc:
            await node.reset()
            error = self.error(exc)
            if self.node_errors.get(node_id) != error.message:
                self.node_errors[node_id] = error.message
                log.warning(
                    "cluster node poll failed",
                    extra=kv(
                        target=self.config.name,
                        node=label,
                        role=role,
                        reason=error.reason.value,
                        error=error.message,
                    ),
                )
            return NodeSnapshot(node=label, role=role, up=False)
        if self.node_errors.pop(node_id, None) is not None:
            log.info("cluster node recovered", extra=kv(target=self.config.name, node=label))
        return reading

    def _report_capabilities(self, readings: Sequence[NodeSnapshot]) -> None:
        """One log line when an optional source becomes unusable or usable again."""
        for name in CAPABILITIES:
            problem: str | None = None
            where = ""
            for reading, node in self._nodes_of(readings):
                if node is not None and node.caps[name].problem is not None:
                    problem, where = node.caps[name].problem, reading.node
                    break
            if problem == self.reported[name]:
                continue
            self.reported[name] = problem
            fields: dict[str, Any] = {"target": self.config.name, "capability": name}
            if problem is None:
                log.info(f"{name} available again", extra=kv(**fields))
                continue
            if where:
                fields["node"] = where
            fields["problem"] = problem
            fields["fix"] = FIXES.get((name, problem), "see the server log")
            log.warning(WHAT_IS_LOST[name], extra=kv(**fields))

    def _nodes_of(
        self, readings: Sequence[NodeSnapshot]
    ) -> list[tuple[NodeSnapshot, RedisNode | None]]:
        by_label = {label: self.nodes.get(i) for i, label in self.labels.items()}
        if not self.config.cluster:
            by_label = {"": self.nodes.get("")}
        return [(r, by_label.get(r.node)) for r in readings]


def loop_time() -> float:
    return asyncio.get_running_loop().time()


# --- snapshot -> families ----------------------------------------------------------------


def families(snap: RedisSnapshot) -> list[Metric]:
    t = snap.target
    base = ["target", "node", "role"] if snap.cluster else ["target"]

    def key(n: NodeSnapshot) -> list[str]:
        return [t, n.node, n.role] if snap.cluster else [t]

    up_nodes = [n for n in snap.nodes if n.up]
    out: list[Metric] = []
    out.append(
        histogram_family(
            "sparki_redis_command_duration_seconds",
            "Server-side command latency from LATENCY HISTOGRAM, accumulated since the exporter "
            'started; the top-N commands by calls, the rest under cmd="other"',
            [*base, "cmd"],
            (([*key(n), cmd], h) for n in up_nodes for cmd, h in n.commands),
        )
    )
    out.append(
        histogram_family(
            "sparki_redis_probe_duration_seconds",
            "Round trip of a PING the exporter sends each poll",
            base,
            ((key(n), n.probe) for n in up_nodes if n.probe is not None),
        )
    )

    def gauge(name: str, doc: str, value: Any) -> None:
        fam = GaugeMetricFamily(name, doc, labels=base)
        for n in up_nodes:
            v = value(n)
            if v is not None:
                fam.add_metric(key(n), v)
        out.append(fam)

    def counter(name: str, doc: str, value: Any) -> None:
        fam = CounterMetricFamily(name, doc, labels=base)
        for n in up_nodes:
            fam.add_metric(key(n), value(n))
        out.append(fam)

    gauge(
        "sparki_redis_memory_used_bytes",
        "Memory allocated by the server (used_memory)",
        lambda n: n.used_memory,
    )
    gauge(
        "sparki_redis_memory_max_bytes",
        "maxmemory; 0 when unset (no limit)",
        lambda n: n.maxmemory,
    )
    gauge(
        "sparki_redis_system_memory_bytes",
        "total_system_memory: the host's memory, the limit when maxmemory is unset",
        lambda n: n.system_memory,
    )
    counter(
        "sparki_redis_evicted_keys",
        "Keys evicted by the maxmemory policy",
        lambda n: n.evicted_keys,
    )
    counter("sparki_redis_keyspace_hits", "Successful key lookups", lambda n: n.keyspace_hits)
    counter("sparki_redis_keyspace_misses", "Failed key lookups", lambda n: n.keyspace_misses)
    counter(
        "sparki_redis_commands_processed",
        "Commands processed by the server",
        lambda n: n.commands_processed,
    )
    gauge("sparki_redis_connected_clients", "Client connections", lambda n: n.connected_clients)
    gauge("sparki_redis_max_clients", "maxclients", lambda n: n.maxclients)
    counter(
        "sparki_redis_expired_keys",
        "Keys removed because their TTL expired",
        lambda n: n.expired_keys,
    )
    counter(
        "sparki_redis_rejected_connections",
        "Connections refused because maxclients was reached",
        lambda n: n.rejected_connections,
    )
    gauge(
        "sparki_redis_uptime_seconds",
        "Seconds since the server started",
        lambda n: n.uptime_seconds,
    )
    gauge(
        "sparki_redis_commands_tracked",
        "Distinct commands in LATENCY HISTOGRAM; more than commands_top_n means some are "
        'summed under cmd="other"',
        lambda n: n.commands_tracked,
    )

    keys = GaugeMetricFamily(
        "sparki_redis_db_keys", "Keys per logical database", labels=[*base, "db"]
    )
    for n in up_nodes:
        for db, count in n.db_keys:
            keys.add_metric([*key(n), db], count)
    out.append(keys)

    info_labels = (
        [*base, "version", "server"] if snap.cluster else [*base, "role", "version", "server"]
    )
    info = GaugeMetricFamily(
        "sparki_redis_server_info",
        "Server version, kind (redis or valkey) and role; always 1",
        labels=info_labels,
    )
    for n in up_nodes:
        extra = [n.version, n.server] if snap.cluster else [n.role, n.version, n.server]
        info.add_metric([*key(n), *extra], 1)
    out.append(info)

    if snap.cluster:
        node_up = GaugeMetricFamily(
            "sparki_redis_node_up",
            "1 when the exporter could poll this cluster node, else 0",
            labels=base,
        )
        for n in snap.nodes:
            node_up.add_metric(key(n), 1 if n.up else 0)
        out.append(node_up)
        if snap.cluster_state_ok is not None:
            state = GaugeMetricFamily(
                "sparki_redis_cluster_state_ok",
                "1 when CLUSTER INFO reports cluster_state:ok",
                labels=["target"],
            )
            state.add_metric([t], 1 if snap.cluster_state_ok else 0)
            out.append(state)

    cap = GaugeMetricFamily(
        "sparki_capability",
        "1 when an optional data source is usable, 0 when it is not "
        "(the log says why and how to fix it)",
        labels=["adapter", "target", "capability"],
    )
    for name, ok in snap.capabilities:
        cap.add_metric(["redis", t, name], 1 if ok else 0)
    out.append(cap)
    runs = merged_runs(up_nodes)
    for run_ in runs:
        parts = [(n.node, dict(n.parts)[run_.name]) for n in up_nodes if run_.name in dict(n.parts)]
        module = importlib.import_module(f"{__package__}.{run_.name}")
        out.extend(module.families(parts, t))
    if runs:
        out.extend(collector_families("redis", t, runs))
    return out


# --- errors -----------------------------------------------------------------------------


def _os_cause(exc: BaseException) -> BaseException | None:
    """The OSError (or ssl.SSLError) a driver error wraps, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def classify(exc: BaseException) -> PollError:
    """Map driver errors to the contract's reasons with messages we compose ourselves.

    redis-py's own connection messages quote host and port, so those are replaced;
    server replies (WRONGPASS, NOPERM, ...) name no credential and are kept.
    """
    if isinstance(exc, PollError):
        return exc
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthenticationWrongNumberOfArgsError):
        return PollError(Reason.AUTH, f"authentication failed: {_first_line(exc)}")
    if isinstance(exc, rexc.NoPermissionError):
        return PollError(
            Reason.PERMISSION,
            f"{_first_line(exc)} (the exporter needs: +ping +info; see docs/redis.md)",
        )
    if isinstance(exc, rexc.ResponseError) and str(exc).upper().startswith("NOAUTH"):
        return PollError(
            Reason.AUTH, "the server requires a password; set password or password_file"
        )
    if isinstance(exc, rexc.TimeoutError | TimeoutError):
        when = "connecting" if "connect" in str(exc).lower() else "waiting for a reply"
        return PollError(Reason.TIMEOUT, f"timed out {when}")
    if isinstance(exc, rexc.BusyLoadingError):
        return PollError(Reason.CONNECT, "the server is loading its dataset")
    if isinstance(exc, rexc.ConnectionError | OSError):
        cause = _os_cause(exc)
        if isinstance(cause, ssl.SSLError):
            detail = getattr(cause, "verify_message", None) or cause.reason or "error"
            return PollError(Reason.CONNECT, f"TLS handshake failed: {detail}")
        if isinstance(cause, socket.gaierror):
            return PollError(Reason.CONNECT, f"cannot resolve the host name: {cause.strerror}")
        if isinstance(cause, OSError) and cause.errno:
            # Not cause.strerror: asyncio puts the address in it ("Connect call failed (...)").
            return PollError(Reason.CONNECT, f"cannot connect: {os.strerror(cause.errno).lower()}")
        if "closed" in str(exc).lower():
            return PollError(Reason.CONNECT, "the server closed the connection")
        return PollError(Reason.CONNECT, "connection failed")
    if isinstance(exc, rexc.ResponseError | rexc.InvalidResponse | rexc.DataError):
        return PollError(Reason.PROTOCOL, _first_line(exc))
    return PollError(Reason.OTHER, type(exc).__name__)
