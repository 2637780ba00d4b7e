"""Maintenance status of every configured member.

Per member: database size against the quota (over it, etcd refuses writes until an
operator defragments and disarms the alarm), size in use against allocated (the gap is
what a defragmentation gives back), leader present, raft term and index. Across
members: the raft index lag of each behind the most advanced one, and how often the
leader changed (counted here from the leader id each poll sees: elections that happen
and resolve between two polls are caught by the raft term instead).

Members are labelled by name (from the member list), never by address.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .client import GatewayError, Unreachable, is_connection_error
from .context import Context, unreachable_text


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    up: bool
    db_size: float = 0.0
    db_in_use: float = 0.0
    leader: bool = False
    has_leader: bool = False
    raft_term: float = 0.0
    raft_index: float = 0.0
    version: str = ""


@dataclass(frozen=True, slots=True)
class StatusPart:
    members: tuple[Member, ...]
    quota: float
    leader_changes: int
    cluster_members: int


class StatusState:
    def __init__(self) -> None:
        self.leader: str | None = None  # last non-zero leader id seen
        self.changes = 0
        # endpoint -> (member id, name) of the member that last answered there: a member
        # that stopped (or was removed from the member list) keeps its label, so its
        # member_up 0 reads as itself. See _remembered for when it does not.
        self.seen: dict[str, tuple[str, str]] = {}

    def observe(self, leader: str) -> None:
        if leader in ("", "0"):
            return
        if self.leader is not None and leader != self.leader:
            self.changes += 1
        self.leader = leader


async def _names(ctx: Context) -> tuple[dict[str, str], dict[str, str], int]:
    """(client URL -> member name, member id -> name, member count) from the member list."""
    reply = await ctx.call_any("/v3/cluster/member/list", {})
    by_url: dict[str, str] = {}
    by_id: dict[str, str] = {}
    members = reply.get("members") or []
    for m in members:
        name = str(m.get("name") or "")
        member_id = str(m.get("ID") or "")
        if not name:  # a member added but not started has no name yet
            continue
        by_id[member_id] = name
        for url in m.get("clientURLs") or []:
            by_url[str(url).rstrip("/")] = name
    return by_url, by_id, len(members)


def _remembered(state: StatusState, endpoint: str, by_id: dict[str, str]) -> str | None:
    """The name to give an endpoint that did not answer, from the member last seen there.

    Still in the member list (stopped, or advertising another URL than the config's):
    its current name. Removed: the name it had, so the operator sees which member the
    stale endpoint was, unless a current member now has that name (a replacement is
    often added under the same name at another address). Then the name belongs to
    the replacement: the same label set twice would collide in /metrics, and a 0 under
    the name of a member that is fine would page for the wrong one, so the stale
    endpoint reads as ``endpoint-<index>`` instead.
    """
    if endpoint not in state.seen:
        return None
    member_id, name = state.seen[endpoint]
    if member_id in by_id:
        return by_id[member_id]
    return None if name in by_id.values() else name


async def collect(ctx: Context) -> StatusPart:
    state: StatusState = ctx.state.setdefault("status", StatusState())
    by_url, by_id, count = await _names(ctx)
    members: list[Member] = []
    leaders: list[tuple[float, str]] = []
    last: BaseException | None = None
    # Every member at once: a hung one costs call_timeout, not the sum of them.
    replies = await asyncio.gather(
        *(ctx.call(e, "/v3/maintenance/status", {}) for e in ctx.config.endpoints),
        return_exceptions=True,
    )
    for index, (endpoint, reply) in enumerate(zip(ctx.config.endpoints, replies, strict=True)):
        fallback = (
            by_url.get(endpoint) or _remembered(state, endpoint, by_id) or f"endpoint-{index}"
        )
        if isinstance(reply, BaseException):
            if isinstance(reply, GatewayError) or not (
                isinstance(reply, TimeoutError) or is_connection_error(reply)
            ):
                raise reply
            last = reply
            members.append(Member(fallback, False))
            continue
        header = reply.get("header") or {}
        member_id = str(header.get("member_id", ""))
        name = by_id.get(member_id, fallback)
        state.seen[endpoint] = (member_id, name)
        leader = str(reply.get("leader", "0"))
        term = float(reply.get("raftTerm", header.get("raft_term", 0)))
        leaders.append((term, leader))
        members.append(
            Member(
                name=name,
                up=True,
                db_size=float(reply.get("dbSize", 0)),
                db_in_use=float(reply.get("dbSizeInUse", reply.get("dbSize", 0))),
                leader=leader == member_id and leader != "0",
                has_leader=leader != "0",
                raft_term=term,
                raft_index=float(reply.get("raftIndex", 0)),
                version=str(reply.get("version", "")),
            )
        )
    if not leaders:
        if isinstance(last, TimeoutError):
            raise TimeoutError("no member answered its status call in time")
        raise Unreachable(unreachable_text(last))
    # The leader of the highest term any member reports is the current one.
    state.observe(max(leaders)[1])
    return StatusPart(tuple(members), float(ctx.config.quota_backend_bytes), state.changes, count)


def families(target: str, part: StatusPart) -> list[Metric]:
    labels = ["target", "member"]

    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    up = gauge("sparki_etcd_member_up", "1 when the member answered its status call this poll")
    size = gauge("sparki_etcd_db_size_bytes", "Size of the member's backend database file")
    in_use = gauge(
        "sparki_etcd_db_size_in_use_bytes",
        "Bytes of the database file in use; the rest is freed space a defragmentation returns",
    )
    has_leader = gauge("sparki_etcd_has_leader", "1 when the member knows a leader")
    is_leader = gauge("sparki_etcd_is_leader", "1 on the member that is the leader")
    term = gauge("sparki_etcd_raft_term", "The member's raft term (grows with every election)")
    index = gauge("sparki_etcd_raft_index", "The member's raft index")
    lag = gauge(
        "sparki_etcd_raft_index_lag",
        "Raft entries the member is behind the most advanced member this poll",
    )
    answered = [m for m in part.members if m.up]
    top = max((m.raft_index for m in answered), default=0.0)
    for m in part.members:
        up.add_metric([target, m.name], 1.0 if m.up else 0.0)
        if not m.up:
            continue
        size.add_metric([target, m.name], m.db_size)
        in_use.add_metric([target, m.name], m.db_in_use)
        has_leader.add_metric([target, m.name], 1.0 if m.has_leader else 0.0)
        is_leader.add_metric([target, m.name], 1.0 if m.leader else 0.0)
        term.add_metric([target, m.name], m.raft_term)
        index.add_metric([target, m.name], m.raft_index)
        lag.add_metric([target, m.name], top - m.raft_index)
    quota = GaugeMetricFamily(
        "sparki_etcd_db_quota_bytes",
        "The backend quota (quota_backend_bytes in the config); over it etcd refuses writes",
        labels=["target"],
    )
    quota.add_metric([target], part.quota)
    members = GaugeMetricFamily(
        "sparki_etcd_cluster_members", "Members in the cluster's member list", labels=["target"]
    )
    members.add_metric([target], float(part.cluster_members))
    changes = CounterMetricFamily(
        "sparki_etcd_leader_changes",
        "Changes of the leader the exporter observed between polls",
        labels=["target"],
    )
    changes.add_metric([target], float(part.leader_changes))
    return [up, size, in_use, quota, has_leader, is_leader, term, index, lag, members, changes]
