"""Redis and Valkey target: connections, cluster discovery and the per-node poll.

One long-lived connection per server (per node, for a cluster), opened lazily and
dropped after any failure so the next poll reconnects. Connect and read timeouts are
half the poll timeout, and every poll also runs under a deadline shorter than the
core's, so a hung server costs one poll slot and never more.

A node's poll is a timed PING (the probe histogram), one INFO (default sections),
then every enabled collector (one module each: latency, memory, clients, stats,
replication, persistence, errorstats, slowlog) with a :class:`NodeContext` holding
that INFO and a ``call`` on the node's connection. A collector that fails on its own
(an error reply: NOPERM, unknown command) degrades alone; a lost connection or the
deadline fails the poll (the node, in a cluster). Cluster discovery (CLUSTER NODES /
CLUSTER INFO) belongs to the target: ``sparki_redis_node_up`` and
``sparki_redis_cluster_state_ok`` come from it, not from a switchable collector.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import os
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from redis import exceptions as rexc
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from ... import collector
from ...adapter import PollError, Reason
from ...collector import CollectorErrors, CollectorRun, enabled
from ...config import GlobalConfig
from ...logs import kv
from ...metrics import (
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from .capability import CAPABILITIES, FIXES, WHAT_IS_LOST
from .catalog import COLLECTORS
from .config import RedisConfig, from_env, host_port, parse_url
from .context import NodeContext
from .discovery import ClusterNode, parse_cluster_nodes, short_ids
from .replies import as_int, parse_info, text

__all__ = ["RedisConfig", "RedisTarget", "classify", "families", "from_env"]

log = logging.getLogger("sparki.redis")

PROBE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

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
    probe: HistogramSnapshot | None = None
    parts: tuple[tuple[str, Any], ...] = ()  # (collector name, its part) for this node
    runs: tuple[CollectorRun, ...] = ()

    def part(self, name: str) -> Any:
        """A collector's part, or None when it is off or failed on this node."""
        return next((p for n, p in self.parts if n == name), None)


@dataclass(frozen=True, slots=True)
class RedisSnapshot:
    target: str
    cluster: bool
    nodes: tuple[NodeSnapshot, ...]
    cluster_state_ok: bool | None = None
    capabilities: tuple[tuple[str, bool], ...] = ()
    collectors: tuple[str, ...] = ()  # the enabled ones, in catalog order
    runs: tuple[CollectorRun, ...] = ()


# --- talking to one server -------------------------------------------------------------


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

    async def call(self, *args: Any) -> Any:
        """One command, one reply: what :attr:`NodeContext.call` does for a collector.

        An error reply is raised as redis-py's ResponseError (NoPermissionError, ...)
        after the whole reply was read, so the connection stays in step and the next
        collector can use it.
        """
        conn = await self._connection()
        await conn.send_command(*args, check_health=False)
        return await conn.read_response()

    async def poll(self, node: str, role: str | None) -> NodeSnapshot:
        """PING (timed), INFO once, then every enabled collector with a NodeContext."""
        await self.ping()
        commands: list[tuple[str, ...]] = []
        if not self.named:
            commands.append(("CLIENT", "SETNAME", CLIENT_NAME))
        commands.append(("INFO",))
        replies = await self.pipeline(*commands)
        if not self.named:
            self.named = True  # refused or not, do not ask again on this connection
            replies.pop(0)
        if isinstance(replies[0], Exception):
            raise replies[0]
        info = parse_info(text(replies[0]))
        if role is None:
            role = {"master": "primary", "slave": "replica"}.get(info.get("role", ""), "unknown")
        ctx = NodeContext(
            node=node,
            role=role,
            info=MappingProxyType(info),
            call=self.call,
            pipeline=self.pipeline,
        )
        parts, runs = await collector.run(
            [(name, functools.partial(c.collect, ctx)) for name, c in self.target.collectors],
            fatal,
            self.target.describe,
        )
        valkey = info.get("server_name") == "valkey" or "valkey_version" in info
        return NodeSnapshot(
            node=node,
            role=role,
            up=True,
            version=info.get("valkey_version") or info.get("redis_version", "unknown"),
            server="valkey" if valkey else "redis",
            uptime_seconds=float(as_int(info.get("uptime_in_seconds"))),
            probe=self.probe.snapshot(),
            parts=tuple(parts.items()),
            runs=runs,
        )


def fatal(exc: BaseException) -> bool:
    """Whether a collector's exception fails the whole poll: the connection is unusable.

    An error reply (NOPERM, unknown command, a protocol problem in one reply) only
    degrades its collector; a lost connection or a timeout would fail every other
    collector the same way, so it fails the poll (and the node is reconnected).
    """
    if isinstance(exc, PollError):
        return exc.reason in (Reason.CONNECT, Reason.TIMEOUT, Reason.AUTH)
    return isinstance(exc, rexc.ConnectionError | rexc.TimeoutError | OSError)


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
        self.node_errors: dict[str, str] = {}
        self.addresses = {self.endpoint.host} - {""}
        # The enabled collectors, in catalog order; only their modules are imported.
        on = enabled(COLLECTORS, global_config.collectors_for("redis"), config.collectors)
        self.collectors: list[tuple[str, Any]] = [
            (c.name, importlib.import_module(f"{__package__}.{c.name}").Collector(config))
            for c in COLLECTORS
            if c.name in on
        ]
        self.collector_errors = CollectorErrors("redis", config.name)

    # -- connections --------------------------------------------------------------------

    def connection(self, host: str, port: int) -> AbstractConnection:
        self.addresses.add(host)
        common: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_timeout,
            "decode_responses": True,
            # A key that is not UTF-8 (SCAN of the ttl/streams collectors) must not
            # break the reply: it decodes with surrogates instead of raising.
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

    def describe(self, exc: BaseException) -> str:
        """A collector's failure for its log line: the server's own reply for an error
        reply (NOPERM names the command to grant), else the classified message."""
        if isinstance(exc, rexc.ResponseError):
            refused = isinstance(exc, rexc.NoPermissionError) or "NOPERM" in str(exc)
            hint = " (grant it, or switch the collector off)" if refused else ""
            return self.error(PollError(Reason.PROTOCOL, _first_line(exc) + hint)).message
        return self.error(exc).message

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
            return self._snapshot(False, (reading,))
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
        seeds += [host_port(s) for s in self.config.seed_nodes]
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
                topology = parse_cluster_nodes(text(nodes_reply))
                state_ok = (
                    None  # refused (ACL without cluster|info): unknown, so not exported
                    if isinstance(info_reply, Exception)
                    else parse_info(text(info_reply)).get("cluster_state") == "ok"
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
        return self._snapshot(True, tuple(readings), state_ok)

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

    def _snapshot(
        self, cluster: bool, readings: tuple[NodeSnapshot, ...], state_ok: bool | None = None
    ) -> RedisSnapshot:
        runs = merge_runs(readings, cluster)
        self.collector_errors.report(runs)
        return RedisSnapshot(
            self.config.name,
            cluster,
            readings,
            cluster_state_ok=state_ok,
            capabilities=self._capabilities(readings),
            collectors=tuple(name for name, _ in self.collectors),
            runs=runs,
        )

    def _capabilities(self, readings: Sequence[NodeSnapshot]) -> tuple[tuple[str, bool], ...]:
        """sparki_capability from the parts' (name, problem) pairs, and one log line
        when an optional source becomes unusable or usable again."""
        seen: dict[str, list[tuple[str, str | None]]] = {}
        for reading in readings:
            for _, part in reading.parts:
                for name, problem in getattr(part, "capabilities", ()):
                    seen.setdefault(name, []).append((reading.node, problem))
        for name in CAPABILITIES:
            if name not in seen:
                continue
            problem, where = next(((p, n) for n, p in seen[name] if p is not None), (None, ""))
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
        return tuple(
            (name, all(p is None for _, p in seen[name])) for name in CAPABILITIES if name in seen
        )


def merge_runs(readings: Sequence[NodeSnapshot], cluster: bool) -> tuple[CollectorRun, ...]:
    """One run per collector for the target: ok only when it succeeded on every node
    polled; the durations add up; the first failure's text (with its node) is kept."""
    merged: dict[str, CollectorRun] = {}
    for reading in readings:
        for run_ in reading.runs:
            error = f"node {reading.node}: {run_.error}" if cluster and run_.error else run_.error
            before = merged.get(run_.name)
            if before is None:
                merged[run_.name] = CollectorRun(run_.name, run_.ok, run_.duration, error)
                continue
            merged[run_.name] = CollectorRun(
                run_.name,
                before.ok and run_.ok,
                before.duration + run_.duration,
                before.error or error,
            )
    return tuple(merged.values())


def loop_time() -> float:
    return asyncio.get_running_loop().time()


# --- snapshot -> families ----------------------------------------------------------------


def families(snap: RedisSnapshot) -> list[Metric]:
    """The target's own families (probe, server, cluster topology, capabilities,
    collector runs), then each enabled collector's, from its parts."""
    t = snap.target
    base = ["target", "node", "role"] if snap.cluster else ["target"]

    def key(n: NodeSnapshot) -> list[str]:
        return [t, n.node, n.role] if snap.cluster else [t]

    up_nodes = [n for n in snap.nodes if n.up]
    out: list[Metric] = []
    for name in snap.collectors:
        parts = [(n.node, n.part(name)) for n in up_nodes if n.part(name) is not None]
        if parts:
            module = importlib.import_module(f"{__package__}.{name}")
            out += module.families(parts, t)
    out.append(
        histogram_family(
            "sparki_redis_probe_duration_seconds",
            "Round trip of a PING the exporter sends each poll",
            base,
            ((key(n), n.probe) for n in up_nodes if n.probe is not None),
        )
    )
    uptime = GaugeMetricFamily(
        "sparki_redis_uptime_seconds", "Seconds since the server started", labels=base
    )
    for n in up_nodes:
        uptime.add_metric(key(n), n.uptime_seconds)
    out.append(uptime)

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
    out += collector.families("redis", t, snap.runs)
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
