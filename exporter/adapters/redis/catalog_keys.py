"""The catalog of the collectors of the design's own Redis keys: TTL conformance and
build-log streams.

Part of the redis catalog (exporter/adapters/redis/catalog.py joins it to the
rest): driver-free like the catalog itself.
"""

from __future__ import annotations

from typing import Any

from ...catalog_model import Recording, Signal
from ...collector import CollectorSpec

# --- design key collectors (rediskeys) ---
# The platform's own Redis usage (issue 12): TTL conformance of its key patterns (the
# ttl collector) and its build-log streams (the streams collector). Both send nothing
# unless the target configures patterns (ttl_policy, streams); see docs/redis.md.

KEYS_COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "ttl",
        "TTL conformance: a bounded SCAN sample per poll, PTTL and MEMORY USAGE, per "
        "configured key pattern (needs ttl_policy)",
    ),
    CollectorSpec(
        "streams",
        "Streams of configured key patterns: length, consumer-group pending, lag and ages "
        "(needs streams)",
    ),
)

TTL_SAMPLED_RATE = "target_pattern:sparki_redis_ttl_keys_sampled:rate15m"
TTL_NO_TTL_RATIO = "target_pattern:sparki_redis_ttl_keys_without_ttl:ratio_rate15m"
TTL_OVER_RATIO = "target_pattern:sparki_redis_ttl_keys_over_policy:ratio_rate15m"
TTL_KEY_BYTES = "target_pattern:sparki_redis_ttl_memory_sampled_bytes:per_key_rate15m"
STREAM_PENDING_AGE = "target_pattern_group:sparki_redis_stream_group_pending_age_seconds:max"
STREAM_UNDELIVERED_AGE = (
    "target_pattern_group:sparki_redis_stream_group_undelivered_age_seconds:max"
)


def _per_target(metric: str) -> str:
    # A cluster target samples each primary: its series carry node; sum it away.
    return f"sum without (node) (rate({metric}[15m]))"


_TTL_SAMPLED = _per_target("sparki_redis_ttl_keys_sampled_total")

KEYS_RECORDINGS: tuple[Recording, ...] = (
    # Keys sampled per second: the TTL alerts' minimum volume.
    Recording("redis", TTL_SAMPLED_RATE, _TTL_SAMPLED),
    Recording(
        "redis",
        TTL_NO_TTL_RATIO,
        f"{_per_target('sparki_redis_ttl_keys_without_ttl_total')} / ({_TTL_SAMPLED} > 0)",
    ),
    Recording(
        "redis",
        TTL_OVER_RATIO,
        f"{_per_target('sparki_redis_ttl_keys_over_policy_total')} / ({_TTL_SAMPLED} > 0)",
    ),
    Recording(
        "redis",
        TTL_KEY_BYTES,
        f"{_per_target('sparki_redis_ttl_memory_sampled_bytes_total')}"
        f" / ({_per_target('sparki_redis_ttl_memory_sampled_keys_total')} > 0)",
    ),
    # The worst stream of a pattern, over the nodes of a cluster too.
    Recording(
        "redis",
        STREAM_PENDING_AGE,
        "max without (node) (sparki_redis_stream_group_pending_age_seconds)",
    ),
    Recording(
        "redis",
        STREAM_UNDELIVERED_AGE,
        "max without (node) (sparki_redis_stream_group_undelivered_age_seconds)",
    ),
)

KEYS_SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="redis_keys_without_ttl",
        adapter="redis",
        alert="SparkiRedisKeysWithoutTtl",
        title="Sampled keys without TTL (patterns whose policy has one)",
        # Only patterns whose policy sets a TTL: build logs have none by design.
        value=(
            f"({TTL_NO_TTL_RATIO}"
            " and on (job, instance, target, pattern) sparki_redis_ttl_policy_seconds)"
        ),
        direction="above",
        unit="ratio",
        window_minutes=15,
        labels=("target", "pattern"),
        summary=(
            "Keys {{ $labels.pattern }} on Redis {{ $labels.target }} are written without a TTL"
        ),
        description=(
            "[value] of the sampled {{ $labels.pattern }} keys on {{ $labels.target }} have"
            " no TTL (threshold [threshold] for [for]), though the policy gives them one:"
            " they never expire and grow memory until eviction or OOM."
        ),
        guard=TTL_SAMPLED_RATE,
        symptom=False,
    ),
    Signal(
        key="redis_keys_ttl_above_policy",
        adapter="redis",
        alert="SparkiRedisKeysTtlAbovePolicy",
        title="Sampled keys with a TTL above policy",
        value=TTL_OVER_RATIO,
        direction="above",
        unit="ratio",
        window_minutes=15,
        labels=("target", "pattern"),
        summary=(
            "Keys {{ $labels.pattern }} on Redis {{ $labels.target }} live longer than their policy"
        ),
        description=(
            "[value] of the sampled {{ $labels.pattern }} keys on {{ $labels.target }} have"
            " a TTL above the pattern's max_ttl (threshold [threshold] for [for]): stale"
            " data (permissions, sessions) is served longer than designed, and memory"
            " holds it longer."
        ),
        guard=TTL_SAMPLED_RATE,
        symptom=False,
    ),
    Signal(
        key="redis_stream_undelivered_age",
        adapter="redis",
        alert="SparkiRedisStreamConsumerBehind",
        title="Oldest stream entry not yet delivered to a consumer group",
        value=STREAM_UNDELIVERED_AGE,
        direction="above",
        unit="seconds",
        window_minutes=0,
        labels=("target", "pattern", "group"),
        summary=(
            "Consumer group {{ $labels.group }} of {{ $labels.pattern }} on"
            " {{ $labels.target }} falls behind"
        ),
        description=(
            "The oldest {{ $labels.pattern }} entry not yet read by consumer group"
            " {{ $labels.group }} on {{ $labels.target }} was written [value] ago"
            " (threshold [threshold] for [for]): its consumers read slower than builds"
            " write, or none is running."
        ),
    ),
    Signal(
        key="redis_stream_pending_age",
        adapter="redis",
        alert="SparkiRedisStreamPendingStuck",
        title="Oldest stream entry delivered but not acknowledged",
        value=STREAM_PENDING_AGE,
        direction="above",
        unit="seconds",
        window_minutes=0,
        labels=("target", "pattern", "group"),
        summary=(
            "Consumer group {{ $labels.group }} of {{ $labels.pattern }} on"
            " {{ $labels.target }} leaves entries unacknowledged"
        ),
        description=(
            "An entry of {{ $labels.pattern }} delivered to consumer group"
            " {{ $labels.group }} on {{ $labels.target }} is still pending after [value]"
            " (threshold [threshold] for [for]): a consumer took it and died or hangs;"
            " nobody processes it until it is claimed."
        ),
    ),
)


def synth_keys(signal: Signal, st: Any) -> Any:
    """promtool test input for the design key signals (exporter.generate.promtests)."""
    from ...generate import promtests as pt

    key = signal.key
    target = "cache"
    if key in ("redis_keys_without_ttl", "redis_keys_ttl_above_policy"):
        counted = (
            "sparki_redis_ttl_keys_without_ttl_total"
            if key == "redis_keys_without_ttl"
            else "sparki_redis_ttl_keys_over_policy_total"
        )
        labels = {"target": target, "pattern": "session:*"}
        # Two primaries of a cluster target sample their halves; the rules sum them.
        comps: list[Any] = []
        for node in ("a1b2c3d4", "e5f6a7b8"):
            where = {**labels, "node": node}
            comps += pt._ratio_counters(
                (counted, where),
                [("sparki_redis_ttl_keys_sampled_total", where, lambda v: 1.0)],
                5.0,
            )
        comps.append(pt._gauge("sparki_redis_ttl_policy_seconds", labels, pt._const(86400.0)))
        traps: tuple[tuple[str, tuple[Any, ...]], ...] = ()
        if key == "redis_keys_without_ttl":
            logs = {"target": target, "pattern": "build:*:logs"}
            traps = (
                (
                    "a pattern without a TTL policy (build logs) whose keys all lack one: silent",
                    (
                        pt._counter(counted, logs, lambda v, m, s: 600.0),
                        pt._counter(
                            "sparki_redis_ttl_keys_sampled_total", logs, lambda v, m, s: 600.0
                        ),
                    ),
                ),
            )
        return pt.Synth(tuple(comps), labels, volume=10.0, traps=traps)
    if key in ("redis_stream_undelivered_age", "redis_stream_pending_age"):
        metric = (
            "sparki_redis_stream_group_undelivered_age_seconds"
            if key == "redis_stream_undelivered_age"
            else "sparki_redis_stream_group_pending_age_seconds"
        )
        labels = {"target": target, "pattern": "build:*:logs", "group": "archiver"}
        return pt.Synth(
            (
                pt._gauge(metric, {**labels, "node": "a1b2c3d4"}),
                # The other primary's streams are caught up: the worst one counts.
                pt._gauge(metric, {**labels, "node": "e5f6a7b8"}, pt._const(0.0)),
                # Another group, caught up, never alerts.
                pt._gauge(
                    metric, {**labels, "group": "viewer", "node": "a1b2c3d4"}, pt._const(0.0)
                ),
            ),
            labels,
        )
    raise KeyError(f"no test input synthesizer for signal {key}")


def keys_rows(b: Any, thresholds: Any) -> None:
    """Dashboard rows of the design key collectors (Board of exporter.generate.dashboards)."""
    from ...generate.dashboards import Query

    t = '{target=~"$target"}'
    b.row("Key TTL conformance (ttl collector; sampled with SCAN)")
    b.graph(
        "Sampled keys without TTL",
        "percentunit",
        "Share of the sampled keys of each pattern that have no TTL, over 15 minutes; the"
        " alert watches patterns whose policy has a TTL.",
        [Query(f"{TTL_NO_TTL_RATIO}{t}", "{{target}} {{pattern}}")],
        signal="redis_keys_without_ttl",
        maximum=1,
    )
    b.graph(
        "Sampled keys with TTL above policy",
        "percentunit",
        "Share of the sampled keys of each pattern whose remaining TTL is above the"
        " pattern's max_ttl, over 15 minutes.",
        [Query(f"{TTL_OVER_RATIO}{t}", "{{target}} {{pattern}}")],
        signal="redis_keys_ttl_above_policy",
        maximum=1,
    )
    b.graph(
        "Keys sampled",
        "ops",
        "Keys read by the TTL sample per second, by pattern (other: matching none). Their"
        " shares estimate the keyspace's mix.",
        [Query(f"{TTL_SAMPLED_RATE}{t}", "{{target}} {{pattern}}")],
        width=8,
    )
    b.graph(
        "Mean size of a sampled key",
        "bytes",
        "MEMORY USAGE per sampled key, by pattern.",
        [Query(f"{TTL_KEY_BYTES}{t}", "{{target}} {{pattern}}")],
        width=8,
    )
    b.graph(
        "SCAN passes over the keyspace",
        "short",
        "Full passes of the TTL sample (each key seen once per pass) in the last 6 hours.",
        [
            Query(
                f"sum by (target) (increase(sparki_redis_ttl_scan_passes_total{t}[6h]))",
                "{{target}}",
            )
        ],
        width=8,
    )
    b.row("Build-log streams (streams collector)")
    b.graph(
        "Oldest entry not yet delivered",
        "s",
        "Per consumer group: age of the oldest entry it has not read yet, worst stream of"
        " the pattern.",
        [Query(f"{STREAM_UNDELIVERED_AGE}{t}", "{{target}} {{pattern}} {{group}}")],
        signal="redis_stream_undelivered_age",
    )
    b.graph(
        "Oldest entry pending (not acknowledged)",
        "s",
        "Per consumer group: age of the oldest entry delivered and never acknowledged.",
        [Query(f"{STREAM_PENDING_AGE}{t}", "{{target}} {{pattern}} {{group}}")],
        signal="redis_stream_pending_age",
    )
    b.graph(
        "Consumer group lag",
        "short",
        "Entries not yet delivered to the group (Redis 7+ lag), worst stream of the pattern.",
        [
            Query(
                f"max without (node) (sparki_redis_stream_group_lag_entries{t})",
                "{{target}} {{pattern}} {{group}}",
            )
        ],
        width=8,
    )
    b.graph(
        "Pending entries",
        "short",
        "Entries delivered to the group and not acknowledged, over the pattern's streams.",
        [
            Query(
                f"sum without (node) (sparki_redis_stream_group_pending_entries{t})",
                "{{target}} {{pattern}} {{group}}",
            )
        ],
        width=8,
    )
    b.graph(
        "Streams and entries",
        "short",
        "Streams tracked per pattern and the entries they hold.",
        [
            Query(
                f"sum without (node) (sparki_redis_stream_keys{t})",
                "{{target}} {{pattern}} streams",
            ),
            Query(
                f"sum without (node) (sparki_redis_stream_entries{t})",
                "{{target}} {{pattern}} entries",
            ),
        ],
        width=8,
    )
