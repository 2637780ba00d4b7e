"""Client connections from /connz: who has bytes queued and why connections were closed.

A server may hold tens of thousands of connections, so each poll reads one bounded page
of open connections, most pending bytes first (``connz_limit`` of them), and one page of
the most recently closed ones. What that costs does not grow with the server.

* Pending bytes are what the server has queued for a client that does not read fast
  enough; a client that keeps them high is about to be cut off as a slow consumer. The
  top ``top_clients`` client names keep their own series, the rest of the page is summed
  as ``other``. Client names are chosen by the clients (user input): they are reduced to
  a safe character set and length before they become a label value.
* nats-server 2.9 has no slow-consumer flag on open connections; it says so only as the
  ``reason`` of a closed one. The closed page is turned into a counter of closures by a
  fixed set of reasons: new closures are those whose ``cid`` the previous poll had not
  seen. More closures than ``connz_limit`` between two polls are
  undercounted, and the first poll only learns what is already there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .context import MonitorError, NatsContext

OTHER = "other"
UNNAMED = "unnamed"
NAME_MAX = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@/+-]+")

# nats-server's ClosedState texts (server/client.go) folded into a bounded label set.
REASONS = (
    "slow_consumer",
    "client_closed",
    "stale",
    "auth",
    "tls",
    "max_connections",
    "io_error",
    "server_shutdown",
    "other",
)


def closed_reason(text: str) -> str:
    """The bounded label for a closed connection's free-text ``reason``."""
    t = text.lower()
    if t.startswith("slow consumer"):
        return "slow_consumer"
    if t == "client closed":
        return "client_closed"
    if t.startswith("stale connection"):
        return "stale"
    if t.startswith(("authentication", "authorization")):
        return "auth"
    if t.startswith("tls"):
        return "tls"
    if t.startswith("maximum connections"):
        return "max_connections"
    if t in ("read error", "write error"):
        return "io_error"
    if t.startswith("server shutdown"):
        return "server_shutdown"
    return "other"


def client_label(name: Any) -> str:
    """A client's name as a label value: a safe character set, at most NAME_MAX long.

    Names never collide with the ``other`` and ``unnamed`` buckets the exporter makes.
    """
    text = _UNSAFE.sub("_", name if isinstance(name, str) else "").strip("_")[:NAME_MAX]
    if not text:
        return UNNAMED
    return text + "_" if text in (OTHER, UNNAMED) else text


@dataclass
class ClosedState:
    """Closures counted so far by reason, and the cids the last closed page held."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    seen: frozenset[int] | None = None  # None until the first poll sets the baseline

    def update(self, closed: list[tuple[int, str]]) -> None:
        cids = frozenset(cid for cid, _ in closed)
        if self.seen is not None:
            # The page is the most recent closures: an older one never climbs back into
            # it, so a cid the last page lacked closed since then.
            for cid, reason in closed:
                if cid not in self.seen:
                    self.counts[reason] += 1
        self.seen = cids


@dataclass(frozen=True, slots=True)
class Connz:
    connections: int  # open client connections (the page's total)
    pending_bytes: int  # summed over the page: every backed-up client unless > connz_limit
    clients: tuple[tuple[str, int], ...]  # (client label, pending bytes), pending > 0
    closed: tuple[tuple[str, int], ...]  # (reason, closures counted so far)


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key, 0)
    return int(v) if isinstance(v, int | float) else 0


def _page(data: dict[str, Any], path: str) -> list[dict[str, Any]]:
    rows = data.get("connections")
    if rows is None:
        return []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise MonitorError(f"{path} connections is not a list of objects")
    return rows


def top_clients(rows: list[dict[str, Any]], top: int) -> tuple[tuple[str, int], ...]:
    """Pending bytes by client label: the ``top`` largest, the rest summed as other.

    Connections sharing a name (replicas of one service) are summed, since on-call looks
    for the service; ``other`` is always present so the series never vanishes.
    """
    by_name: dict[str, int] = {}
    for row in rows:
        pending = _int(row, "pending_bytes")
        if pending > 0:
            label = client_label(row.get("name"))
            by_name[label] = by_name.get(label, 0) + pending
    ranked = sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:top]
    return (*kept, (OTHER, sum(v for _, v in ranked[top:])))


async def collect(ctx: NatsContext) -> Connz:
    limit = ctx.config.connz_limit
    path = "/connz"
    # sort=pending: nats-server's name for pending_bytes; subs=0 keeps the answer small.
    data = await ctx.get_json(f"{path}?state=open&sort=pending&subs=0&limit={limit}")
    rows = _page(data, path)
    closed = await ctx.get_json(f"{path}?state=closed&sort=stop&subs=0&limit={limit}")
    ctx.closed.update(
        [
            (_int(r, "cid"), closed_reason(str(r.get("reason", ""))))
            for r in _page(closed, path)
            if "cid" in r
        ]
    )
    return Connz(
        _int(data, "total"),
        sum(_int(r, "pending_bytes") for r in rows),
        top_clients(rows, ctx.config.top_clients),
        tuple(ctx.closed.counts.items()),
    )


def families(target: str, c: Connz) -> list[Metric]:
    total = GaugeMetricFamily(
        "sparki_nats_pending_bytes",
        "Bytes the server has queued for clients that have not read them yet (/connz)",
        labels=["target"],
    )
    total.add_metric([target], float(c.pending_bytes))
    conns = GaugeMetricFamily(
        "sparki_nats_client_connections",
        "Open client connections as /connz counts them",
        labels=["target"],
    )
    conns.add_metric([target], float(c.connections))
    clients = GaugeMetricFamily(
        "sparki_nats_client_pending_bytes",
        "Bytes queued for each of the top_clients client names with the most; rest: other",
        labels=["target", "client"],
    )
    for name, pending in c.clients:
        clients.add_metric([target, name], float(pending))
    closed = CounterMetricFamily(
        "sparki_nats_closed_connections",
        "Client connections the server closed since the exporter started, by reason",
        labels=["target", "reason"],
    )
    for reason, count in c.closed:
        closed.add_metric([target, reason], float(count))
    return [total, conns, clients, closed]
