"""TTL conformance: do the keys of each pattern expire as the platform's design says?

The storage design fixes a TTL per key pattern (sessions 24 h, permissions 15 min, rate
limits 1 min, ...) and warns that keys without one bloat memory until eviction or OOM.
No server statistic tells which keys lack a TTL, so this collector samples the keyspace:

* each poll reads the next ``keys_per_poll`` keys with ``SCAN`` (never ``KEYS``, which
  blocks the server for the whole keyspace), the cursor kept across polls, so over
  enough polls every key is seen (a full pass takes keyspace / keys_per_poll polls);
* one pipelined round trip asks ``PTTL`` of every key read, and ``MEMORY USAGE`` of the
  first ``memory_keys_per_poll`` of them;
* each key is classified by the configured patterns (Redis globs, first match wins;
  keys no pattern matches count under ``pattern="other"``) and counted: sampled,
  without a TTL, with a TTL above the pattern's policy, bytes measured.

The counts are cumulative counters, so shares ("keys of session:* without a TTL") are
recording rules over a window of samples, not a number the exporter makes up. A key's
remaining TTL is never above the TTL it was given, so "above policy" can only
under-report: a key set with 48 h shows as above a 24 h policy during its first day.

Off (no command sent) unless the target has a ``ttl_policy`` with patterns. In a Redis
Cluster each primary is sampled with its own cursor; replicas are skipped (same keys).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from ...config import Duration, Strict
from ...logs import kv
from ...metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from .context import NodeContext
from .keyscan import Classifier, as_int, as_text, batch, glob_to_regex, skip_node

log = logging.getLogger("sparki.redis")

OTHER = "other"
# SCAN calls per poll at most: COUNT is a hint, and a sparse table (after mass
# deletes) can answer with few keys; a few more calls fill the budget, never more.
MAX_SCAN_CALLS = 4
# A refused MEMORY USAGE (ACL, managed service) is retried this often, not every poll.
RECHECK_AFTER = 60.0
# The commands this collector sends, as LATENCY HISTOGRAM and commandstats name them.
OWN_COMMANDS = ("scan", "pttl", "memory|usage")


class TtlRule(Strict):
    """One key pattern and the longest TTL its keys may have."""

    pattern: str = Field(description="Redis glob, as SCAN MATCH takes it: session:*, perm:*:*")
    max_ttl: Duration | None = Field(
        None,
        description="longest TTL a key may have; unset: the design gives these keys no TTL "
        "(a key without one is expected, not counted as a problem)",
    )

    @field_validator("pattern")
    @classmethod
    def _valid(cls, value: str) -> str:
        if not value or value == OTHER:
            raise ValueError(f"a pattern must be a non-empty Redis glob other than {OTHER!r}")
        glob_to_regex(value)
        return value


class TtlPolicy(Strict):
    """The TTL policy of a target's keys and how much of the keyspace a poll samples."""

    patterns: tuple[TtlRule, ...] = Field(
        (), description="first match wins; keys matching none count under pattern=other"
    )
    keys_per_poll: int = Field(
        100, ge=10, le=100_000, description="keys SCAN reads per poll (and PTTL asks)"
    )
    memory_keys_per_poll: int = Field(
        10, ge=0, le=10_000, description="of those, keys whose MEMORY USAGE is asked"
    )
    memory_samples: int = Field(
        5,
        ge=0,
        description="MEMORY USAGE ... SAMPLES: elements read per aggregate key; 0 reads all "
        "(exact, but costs the key's size: one large hash can stall the server)",
    )

    @field_validator("patterns")
    @classmethod
    def _unique(cls, value: tuple[TtlRule, ...]) -> tuple[TtlRule, ...]:
        seen = [r.pattern for r in value]
        dupes = sorted({p for p in seen if seen.count(p) > 1})
        if dupes:
            raise ValueError(f"patterns listed twice: {', '.join(dupes)}")
        return value


def policy_of(config: Any) -> TtlPolicy | None:
    """The target's policy when it names patterns, else None (the collector is off)."""
    policy = getattr(config, "ttl_policy", None)
    if isinstance(policy, dict):  # a config model without the field yet, or a test
        policy = TtlPolicy.model_validate(policy)
    if policy is None or not policy.patterns:
        return None
    return policy


@dataclass(frozen=True, slots=True)
class PatternCounts:
    """Cumulative counts of one pattern on one node since the exporter started."""

    pattern: str
    sampled: int = 0
    without_ttl: int = 0
    over_policy: int = 0
    memory_keys: int = 0
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class TtlPart:
    """What the collector knows of one node after a poll (immutable: a snapshot)."""

    counts: tuple[PatternCounts, ...] = ()
    passes: int = 0  # full SCAN passes over the node's keyspace completed
    policy: tuple[tuple[str, float | None], ...] = ()  # (pattern, max TTL seconds)
    active: bool = False  # False: no policy, or a cluster replica; nothing exported


class _NodeState:
    __slots__ = ("counts", "cursor", "passes")

    def __init__(self, patterns: Sequence[str]) -> None:
        self.cursor = 0
        self.passes = 0
        # pattern -> [sampled, without_ttl, over_policy, memory_keys, memory_bytes]
        self.counts: dict[str, list[int]] = {p: [0, 0, 0, 0, 0] for p in (*patterns, OTHER)}


class Collector:
    """Samples one target's keyspace, node by node, a bounded number of keys per poll."""

    def __init__(self, config: Any) -> None:
        self.target = getattr(config, "name", "")
        self.policy = policy_of(config)
        rules = self.policy.patterns if self.policy else ()
        self.classify = Classifier([r.pattern for r in rules])
        # max TTL in milliseconds, as PTTL answers; None: no TTL expected
        self.limits_ms = {
            r.pattern: None if r.max_ttl is None else round(r.max_ttl * 1000) for r in rules
        }
        self.policy_part = tuple((r.pattern, r.max_ttl) for r in rules)
        self.nodes: dict[str, _NodeState] = {}
        # When MEMORY USAGE was last refused; one flag for the target, since every node
        # runs the same ACL (or the same managed service's command filter).
        self.memory_refused_at: float | None = None

    async def collect(self, ctx: NodeContext) -> TtlPart:
        policy = self.policy
        if policy is None or skip_node(ctx):
            return TtlPart(policy=self.policy_part)
        state = self.nodes.get(ctx.node)
        if state is None:
            state = self.nodes[ctx.node] = _NodeState(list(self.limits_ms))
        keys = await self._scan(ctx, state, policy.keys_per_poll)
        commands: list[tuple[Any, ...]] = [("PTTL", k) for k in keys]
        memory = self._memory_wanted(policy)
        measured = keys[:memory]
        commands += [("MEMORY", "USAGE", k, "SAMPLES", policy.memory_samples) for k in measured]
        replies = await batch(ctx, commands)
        self._count(state, keys, replies[: len(keys)], measured, replies[len(keys) :])
        return self._part(state)

    async def _scan(self, ctx: NodeContext, state: _NodeState, budget: int) -> list[str]:
        """About ``budget`` keys from where the previous poll stopped; a pass ends at 0.

        SCAN's COUNT is a hint: a call may return a few keys more. All of them are kept;
        dropping the surplus would skip keys the cursor has already passed.
        """
        keys: list[str] = []
        for _ in range(MAX_SCAN_CALLS):
            reply = await ctx.call("SCAN", state.cursor, "COUNT", budget - len(keys))
            state.cursor = int(as_text(reply[0]))
            keys.extend(as_text(k) for k in reply[1])
            if state.cursor == 0:
                state.passes += 1
                break  # the next poll starts the next pass
            if len(keys) >= budget:
                break
        return keys

    def _memory_wanted(self, policy: TtlPolicy) -> int:
        refused = self.memory_refused_at
        if refused is not None and time.monotonic() - refused < RECHECK_AFTER:
            return 0
        return policy.memory_keys_per_poll

    def _count(
        self,
        state: _NodeState,
        keys: Sequence[str],
        ttls: Sequence[Any],
        measured: Sequence[str],
        sizes: Sequence[Any],
    ) -> None:
        for reply in ttls:
            if isinstance(reply, Exception):
                raise reply  # PTTL refused: the collector fails, and says why
        classes: dict[str, str] = {}
        for key, reply in zip(keys, ttls, strict=True):
            ttl = as_int(reply)
            if ttl is None or ttl == -2:  # gone since SCAN saw it
                continue
            pattern = self.classify(key) or OTHER
            classes[key] = pattern
            row = state.counts[pattern]
            row[0] += 1
            if ttl == -1:
                row[1] += 1
            else:
                limit = self.limits_ms.get(pattern)
                if limit is not None and ttl > limit:
                    row[2] += 1
        refused = next((r for r in sizes if isinstance(r, Exception)), None)
        if refused is not None:
            self._refuse_memory(refused)
            return
        if sizes and self.memory_refused_at is not None:
            self.memory_refused_at = None
            log.info("MEMORY USAGE available again", extra=kv(target=self.target))
        for key, reply in zip(measured, sizes, strict=True):
            size = as_int(reply)
            measured_as = classes.get(key)
            if size is None or measured_as is None:
                continue
            row = state.counts[measured_as]
            row[3] += 1
            row[4] += size

    def _refuse_memory(self, exc: Exception) -> None:
        first = self.memory_refused_at is None
        self.memory_refused_at = time.monotonic()
        if first:
            log.warning(
                "MEMORY USAGE refused: sampled memory per pattern is not updated, TTL "
                "conformance continues",
                extra=kv(
                    target=self.target,
                    error=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                    fix="ACL SETUSER <user> +memory|usage",
                ),
            )

    def _part(self, state: _NodeState) -> TtlPart:
        return TtlPart(
            counts=tuple(PatternCounts(p, *row) for p, row in state.counts.items()),
            passes=state.passes,
            policy=self.policy_part,
            active=True,
        )


def families(parts: Sequence[tuple[str, TtlPart]], target: str) -> list[Metric]:
    """Per pattern (and per node of a cluster) counters, and the policy as a gauge."""
    active = [(node, part) for node, part in parts if part.active]
    cluster = any(node for node, _ in active)
    base = ["target", "node"] if cluster else ["target"]

    def key(node: str) -> list[str]:
        return [target, node] if cluster else [target]

    def counter(name: str, doc: str, field: str) -> Metric:
        fam = CounterMetricFamily(name, doc, labels=[*base, "pattern"])
        for node, part in active:
            for c in part.counts:
                fam.add_metric([*key(node), c.pattern], getattr(c, field))
        return fam

    out = [
        counter(
            "sparki_redis_ttl_keys_sampled",
            "Keys the TTL sample read (SCAN, then PTTL), by the configured pattern they "
            'matched first; keys matching none under pattern="other"',
            "sampled",
        ),
        counter(
            "sparki_redis_ttl_keys_without_ttl",
            "Sampled keys that had no TTL (PTTL -1)",
            "without_ttl",
        ),
        counter(
            "sparki_redis_ttl_keys_over_policy",
            "Sampled keys whose remaining TTL was above their pattern's max_ttl",
            "over_policy",
        ),
        counter(
            "sparki_redis_ttl_memory_sampled_keys",
            "Sampled keys whose MEMORY USAGE was read",
            "memory_keys",
        ),
        counter(
            "sparki_redis_ttl_memory_sampled_bytes",
            "Bytes MEMORY USAGE reported for those keys; divided by memory_sampled_keys, the "
            "mean size of a key of the pattern",
            "memory_bytes",
        ),
    ]
    passes = CounterMetricFamily(
        "sparki_redis_ttl_scan_passes",
        "Full SCAN passes the TTL sample completed over the keyspace (each key seen once per pass)",
        labels=base,
    )
    for node, part in active:
        passes.add_metric(key(node), part.passes)
    out.append(passes)
    policy = GaugeMetricFamily(
        "sparki_redis_ttl_policy_seconds",
        "The configured max_ttl of each pattern (patterns without a TTL policy have no series)",
        labels=["target", "pattern"],
    )
    if active:
        for pattern, seconds in active[0][1].policy:
            if seconds is not None:
                policy.add_metric([target, pattern], seconds)
    out.append(policy)
    return out
