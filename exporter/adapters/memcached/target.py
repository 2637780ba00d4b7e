"""The Memcached target: every node of one client-side distributed cache, polled at once.

One long-lived connection per node, opened lazily (and authenticated, with ASCII auth)
and dropped after any failure so the next poll reconnects. All nodes are polled
concurrently under one deadline shorter than the core's, so a hung node costs that
deadline once and never delays the others' results. A node that fails is exported as
``sparki_memcached_node_up 0`` while the others' series stay; only when no node answers
does the poll fail (``sparki_up 0``, the first node's reason).

On each node the enabled collectors (stats, slabs, settings, canary) run one after the
other on its connection through :func:`exporter.collector.run`: a collector whose
command the server refuses (``ERROR``, ``SERVER_ERROR``) degrades alone; a broken or
hung connection, an authentication failure or a reply we cannot parse fails the node.

Server restarts: memcached's counters start from zero when it restarts. They are
exported raw; Prometheus' rate() reads the drop as a counter reset. The target notices
a restart (a new pid or a smaller uptime in ``stats``) and logs it once, so a sudden
drop on a dashboard has an explanation in the log.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ... import collector
from ...adapter import PollError, Reason
from ...config import GlobalConfig
from ...logs import kv
from ...metrics import GaugeMetricFamily, Metric
from .catalog import COLLECTORS
from .config import MemcachedConfig, host_port
from .context import NodeContext, NodeState
from .protocol import AuthFailed, Connection, ProtocolError, ServerReplyError

log = logging.getLogger("sparki.memcached")

ADAPTER = "memcached"
# Share of the poll timeout a poll may use before it gives up on a node by itself.
DEADLINE_SHARE = 0.9


# --- snapshots -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    node: str
    up: bool
    parts: tuple[tuple[str, Any], ...] = ()  # (collector name, its part)
    runs: tuple[collector.CollectorRun, ...] = ()


@dataclass(frozen=True, slots=True)
class MemcachedSnapshot:
    target: str
    collectors: tuple[str, ...]  # the enabled collectors, in the order they run
    nodes: tuple[NodeSnapshot, ...]
    runs: tuple[collector.CollectorRun, ...]  # per collector, over every node that answered


# --- errors -----------------------------------------------------------------------------


def _os_cause(exc: BaseException) -> OSError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            return current
        current = current.__cause__ or current.__context__
    return None


def classify(exc: BaseException) -> PollError:
    """Errors to the contract's reasons, with messages we compose (no address, no secret)."""
    if isinstance(exc, PollError):
        return exc
    if isinstance(exc, AuthFailed):
        if "unauthenticated" in str(exc):
            return PollError(
                Reason.AUTH,
                "the server requires authentication (memcached -Y); set username and password",
            )
        return PollError(Reason.AUTH, "authentication failed: the server refused the credentials")
    if isinstance(exc, TimeoutError):
        return PollError(Reason.TIMEOUT, "no reply within the poll deadline")
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionResetError | BrokenPipeError):
        return PollError(Reason.CONNECT, "the server closed the connection")
    if isinstance(exc, socket.gaierror):
        return PollError(Reason.CONNECT, f"cannot resolve the host name: {exc.strerror}")
    cause = _os_cause(exc)
    if cause is not None:
        if isinstance(cause, socket.gaierror):
            return PollError(Reason.CONNECT, f"cannot resolve the host name: {cause.strerror}")
        if cause.errno:
            # Not str(cause): asyncio puts the address in it ("Connect call failed (...)").
            return PollError(Reason.CONNECT, f"cannot connect: {os.strerror(cause.errno).lower()}")
        return PollError(Reason.CONNECT, "connection failed")
    if isinstance(exc, ProtocolError):
        return PollError(Reason.PROTOCOL, f"not a memcached reply: {exc}")
    if isinstance(exc, ServerReplyError):
        return PollError(Reason.PROTOCOL, f"the server answered {exc}")
    return PollError(Reason.OTHER, type(exc).__name__)


def fatal(exc: BaseException) -> bool:
    """Only a refused command (the stream still in step) degrades just its collector."""
    return not isinstance(exc, ServerReplyError)


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ServerReplyError) else classify(exc).message


# --- one node ---------------------------------------------------------------------------


class MemcachedNode:
    """One node's connection and its memory across polls."""

    def __init__(self, label: str, address: str) -> None:
        self.label = label
        self.host, self.port = host_port(address)
        self.conn: Connection | None = None
        self.state = NodeState()
        self.pid: int | None = None
        self.uptime: float | None = None
        self.error: str | None = None

    async def reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.close()

    async def connection(self, target: MemcachedTarget) -> Connection:
        if self.conn is None:
            conn = await Connection.open(self.host, self.port, target.socket_timeout)
            try:
                if target.username is not None and target.password is not None:
                    await conn.authenticate(target.username, target.password)
            except BaseException:
                await conn.close()
                raise
            self.conn = conn
        return self.conn

    def check_restart(self, target: str, stats: Any) -> None:
        """Log once when the server restarted: its counters start from zero again."""
        pid = getattr(stats, "pid", None)
        uptime = stats.get("uptime") if stats is not None else None
        restarted = (self.pid is not None and pid is not None and pid != self.pid) or (
            self.uptime is not None and uptime is not None and uptime < self.uptime
        )
        if restarted:
            log.info(
                "memcached node restarted; its counters start again from zero "
                "(rate() treats the drop as a counter reset)",
                extra=kv(target=target, node=self.label),
            )
        self.pid, self.uptime = pid, uptime


# --- the target -------------------------------------------------------------------------


class MemcachedTarget:
    """Polls every node of one configured Memcached target."""

    def __init__(self, config: MemcachedConfig, global_config: GlobalConfig) -> None:
        self.config = config
        self.timeout = global_config.timeout_for(config)
        self.socket_timeout = config.socket_timeout or self.timeout / 2
        self.username = config.username
        self.password = config.password.get_secret_value() if config.password else None
        self.nodes = [MemcachedNode(label, address) for label, address in config.node_list()]
        on = collector.enabled(COLLECTORS, global_config.collectors_for(ADAPTER), config.collectors)
        # Only the enabled collectors' modules are imported.
        self.modules: tuple[tuple[str, ModuleType], ...] = tuple(
            (spec.name, importlib.import_module(f"{__package__}.{spec.name}"))
            for spec in COLLECTORS
            if spec.name in on
        )
        self.errors = collector.CollectorErrors(ADAPTER, config.name)
        # One token per exporter process: two exporters never share a canary key.
        self.token = secrets.token_hex(4)
        self.canary_ttl = max(1, round(config.canary_ttl))

    async def reset(self) -> None:
        for node in self.nodes:
            await node.reset()

    async def close(self) -> None:
        await self.reset()

    def _error(self, exc: BaseException) -> PollError:
        error = classify(exc)
        message = error.message
        if self.password:
            message = message.replace(self.password, "<redacted>")
        return PollError(error.reason, message)

    async def _poll_node(self, node: MemcachedNode, deadline: float) -> NodeSnapshot:
        try:
            async with asyncio.timeout_at(deadline):
                conn = await node.connection(self)
                ctx = NodeContext(
                    target=self.config.name,
                    node=node.label,
                    conn=conn,
                    state=node.state,
                    canary_key=(
                        f"{self.config.canary_key_prefix}:{self.config.name}:"
                        f"{node.label}:{self.token}"
                    ),
                    canary_ttl=self.canary_ttl,
                )
                steps = [(name, _step(module, ctx)) for name, module in self.modules]
                parts, runs = await collector.run(steps, fatal, describe)
        except Exception as exc:
            await node.reset()
            error = self._error(exc)
            if node.error != error.message:
                node.error = error.message
                log.warning(
                    "memcached node poll failed",
                    extra=kv(
                        target=self.config.name,
                        node=node.label,
                        reason=error.reason.value,
                        error=error.message,
                    ),
                )
            kept = node.state.kept.get("canary")
            canary = (("canary", kept.part()),) if kept is not None else ()
            raise _NodeFailed(NodeSnapshot(node.label, False, canary), error) from None
        if node.error is not None:
            node.error = None
            log.info("memcached node recovered", extra=kv(target=self.config.name, node=node.label))
        node.check_restart(self.config.name, parts.get("stats"))
        return NodeSnapshot(node.label, True, tuple(parts.items()), runs)

    async def poll(self) -> MemcachedSnapshot:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout * DEADLINE_SHARE
        results = await asyncio.gather(
            *(self._poll_node(n, deadline) for n in self.nodes), return_exceptions=True
        )
        readings: list[NodeSnapshot] = []
        failures: list[tuple[str, PollError]] = []
        for node, result in zip(self.nodes, results, strict=True):
            if isinstance(result, _NodeFailed):
                readings.append(result.snapshot)
                failures.append((node.label, result.error))
            elif isinstance(result, BaseException):
                raise result
            else:
                readings.append(result)
        up = [r for r in readings if r.up]
        runs = _merge_runs([name for name, _ in self.modules], up)
        self.errors.report(runs)
        snap = MemcachedSnapshot(
            self.config.name, tuple(name for name, _ in self.modules), tuple(readings), runs
        )
        if not up:
            label, first = failures[0]
            where = f"node {label}: " if len(self.nodes) > 1 else ""
            raise PollError(first.reason, f"{where}{first.message}", snapshot=snap)
        return snap


class _NodeFailed(Exception):
    def __init__(self, snapshot: NodeSnapshot, error: PollError) -> None:
        super().__init__(error.message)
        self.snapshot = snapshot
        self.error = error


def _step(module: ModuleType, ctx: NodeContext) -> Any:
    async def call() -> Any:
        return await module.collect(ctx)

    return call


def _merge_runs(
    names: Sequence[str], nodes: Sequence[NodeSnapshot]
) -> tuple[collector.CollectorRun, ...]:
    """One run per collector over the nodes that answered: ok only if ok on every one,
    its duration the slowest node's, its error the first node's (named)."""
    out = []
    for name in names:
        found = [(n.node, r) for n in nodes for r in n.runs if r.name == name]
        if not found:
            continue
        failed = [(node, r) for node, r in found if not r.ok]
        error = f"node {failed[0][0]}: {failed[0][1].error}" if failed else ""
        duration = max(r.duration for _, r in found)
        out.append(collector.CollectorRun(name, not failed, duration, error))
    return tuple(out)


# --- snapshot -> families ----------------------------------------------------------------


def families(snap: MemcachedSnapshot) -> list[Metric]:
    out: list[Metric] = []
    for name in snap.collectors:
        module = importlib.import_module(f"{__package__}.{name}")
        parts = [(n.node, part) for n in snap.nodes for pname, part in n.parts if pname == name]
        out += module.families(snap.target, parts)
    node_up = GaugeMetricFamily(
        "sparki_memcached_node_up",
        "1 when the exporter could poll this node of the target, else 0",
        labels=["target", "node"],
    )
    for n in snap.nodes:
        node_up.add_metric([snap.target, n.node], 1 if n.up else 0)
    out.append(node_up)
    out += collector.families(ADAPTER, snap.target, snap.runs)
    return out
