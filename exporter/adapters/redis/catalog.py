"""What the Redis adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
it must import no database or cloud driver, and nothing from exporter.generate at
module level: dashboard(), synth() and scenarios() import the generator's helpers when
called, so importing this module never loads redis-py or the Grafana SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...catalog_model import Recording, Signal, quantiles
from ...collector import CollectorSpec

if TYPE_CHECKING:
    from ...generate.promtests import Synth
    from ...generate.thresholds import SignalThresholds, Thresholds

TITLE = "Redis"
# What the command line's --help names: the servers polled, and the variables any one
# of which configures a target without a config file (spec.from_env).
SERVERS = "Redis/Valkey"
ENV_VARIABLES = ("REDIS_HOST", "REDIS_CLUSTER_NODES")

# Per-node collectors, run in this order on every polled node after PING and INFO;
# each is exporter/adapters/redis/<name>.py. All read INFO the target already has,
# except where said; all are cheap, so all are on by default.
COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "latency",
        "per-command latency histograms (INFO commandstats, LATENCY HISTOGRAM, "
        "CONFIG GET latency-tracking)",
    ),
    CollectorSpec("memory", "used memory, maxmemory, RSS and fragmentation"),
    CollectorSpec("clients", "connected, blocked and rejected clients against maxclients"),
    CollectorSpec("stats", "keyspace hits and misses, evictions, expirations, commands, keys"),
    CollectorSpec("replication", "role, replicas, link to the primary, replica lag in bytes"),
    CollectorSpec("persistence", "RDB save status and age, AOF write status"),
    CollectorSpec("errorstats", "error replies by prefix (INFO errorstats)"),
    CollectorSpec("slowlog", "slow log length and growth (SLOWLOG LEN, SLOWLOG GET 1)"),
)

REDIS_CMD_OBS_RATE = "target:sparki_redis_command_duration_seconds:rate5m"
REDIS_LATENCY = "target:sparki_redis_command_duration_seconds:{q}_rate5m"
REDIS_MEM_UTIL = "target:sparki_redis_memory:utilization"
REDIS_EVICT_RATE = "target:sparki_redis_evicted_keys:rate5m"
REDIS_LOOKUP_RATE = "target:sparki_redis_keyspace_lookups:rate5m"
REDIS_HIT_RATIO = "target:sparki_redis_keyspace_hits:ratio_rate5m"
REDIS_CMD_RATE = "target:sparki_redis_commands_processed:rate5m"
REDIS_CLIENT_UTIL = "target:sparki_redis_clients:utilization"
REDIS_REJECTED_RATE = "target:sparki_redis_rejected_connections:rate5m"


def persistence_ok(selector: str = "") -> str:
    """0 when the last RDB save failed, or (AOF on) the last AOF write failed.

    The product is an AND of two 0/1 gauges; the AOF one exists only where AOF is on,
    so ``or`` falls back to the RDB status alone there.
    """
    rdb, aof = (
        f"sparki_redis_rdb_last_bgsave_ok{selector}",
        f"sparki_redis_aof_last_write_ok{selector}",
    )
    return f"min without (role) ({rdb} * {aof} or {rdb})"


REDIS_PERSISTENCE_OK = persistence_ok()

_REDIS_EVICTIONS = "rate(sparki_redis_evicted_keys_total[5m])"
_REDIS_HITS = "rate(sparki_redis_keyspace_hits_total[5m])"
_REDIS_LOOKUPS = (
    "sum without (node, role) (rate(sparki_redis_keyspace_hits_total[5m])"
    " + rate(sparki_redis_keyspace_misses_total[5m]))"
)

RECORDINGS: tuple[Recording, ...] = (
    # A cluster target's series carry node and role: per-target rules sum them
    # away; memory stays per node, since each node has its own maxmemory, but without
    # role, so a failover does not end one series and start another (which would
    # resolve a firing alert and restart its `for`).
    *quantiles("redis", "target", "sparki_redis_command_duration_seconds", "5m", "cmd, node, role"),
    Recording(
        "redis",
        REDIS_CMD_OBS_RATE,
        "sum without (cmd, node, role) (rate(sparki_redis_command_duration_seconds_count[5m]))",
    ),
    Recording(
        "redis",
        REDIS_MEM_UTIL,
        # maxmemory where set, else the host's memory (maxmemory 0, Redis' default,
        # means no limit but the machine's).
        "max without (role) (sparki_redis_memory_used_bytes)"
        " / (max without (role) (sparki_redis_memory_max_bytes) > 0"
        " or max without (role) (sparki_redis_system_memory_bytes) > 0)",
    ),
    Recording("redis", REDIS_EVICT_RATE, f"sum without (node, role) ({_REDIS_EVICTIONS})"),
    Recording("redis", REDIS_LOOKUP_RATE, _REDIS_LOOKUPS),
    Recording(
        "redis",
        REDIS_HIT_RATIO,
        f"sum without (node, role) ({_REDIS_HITS}) / ({_REDIS_LOOKUPS} > 0)",
    ),
    Recording(
        "redis",
        REDIS_CMD_RATE,
        "sum without (node, role) (rate(sparki_redis_commands_processed_total[5m]))",
    ),
    Recording(
        "redis",
        REDIS_CLIENT_UTIL,
        # Per node (each has its own maxclients), without role, as memory.
        "max without (role) (sparki_redis_connected_clients)"
        " / (max without (role) (sparki_redis_max_clients) > 0)",
    ),
    Recording(
        "redis",
        REDIS_REJECTED_RATE,
        "sum without (node, role) (rate(sparki_redis_rejected_connections_total[5m]))",
    ),
)

SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="redis_command_latency",
        adapter="redis",
        alert="SparkiRedisCommandLatencyHigh",
        title="Redis command latency p95",
        value=REDIS_LATENCY.format(q="p95"),
        direction="above",
        unit="seconds",
        window_minutes=5,
        labels=("target",),
        summary="Redis command latency p95 above [threshold] on {{ $labels.target }}",
        description=(
            "The 95th percentile server-side latency over all commands on"
            " {{ $labels.target }} is [value] (threshold [threshold] for [for])."
        ),
        guard=REDIS_CMD_OBS_RATE,
    ),
    Signal(
        key="redis_memory",
        adapter="redis",
        alert="SparkiRedisMemoryHigh",
        title="Redis memory used / maxmemory (or host memory)",
        value=REDIS_MEM_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "node"),
        summary="Redis {{ $labels.target }} uses over [threshold] of its memory limit",
        description=(
            "Redis {{ $labels.target }} (node {{ $labels.node }}) uses [value] of its"
            " maxmemory, or of the host's memory where maxmemory is unset (threshold"
            " [threshold] for [for])."
        ),
    ),
    Signal(
        key="redis_node_down",
        adapter="redis",
        alert="SparkiRedisNodeDown",
        title="Redis Cluster node reachable",
        value="max without (role) (sparki_redis_node_up)",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "node"),
        summary="Redis Cluster node {{ $labels.node }} of {{ $labels.target }} is unreachable",
        description=(
            "sparki_redis_node_up is [value] for node {{ $labels.node }} of cluster target"
            " {{ $labels.target }} for [for]: the target as a whole still polls, but this"
            " node's slots fail for clients until a replica takes over."
        ),
    ),
    Signal(
        key="redis_cluster_state",
        adapter="redis",
        alert="SparkiRedisClusterStateFail",
        title="Redis Cluster state ok",
        value="sparki_redis_cluster_state_ok",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target",),
        summary="Redis Cluster {{ $labels.target }} reports cluster_state:fail",
        description=(
            "sparki_redis_cluster_state_ok is [value] for [for]: CLUSTER INFO of"
            " {{ $labels.target }} reports cluster_state other than ok, and the cluster"
            " refuses queries for at least some slots."
        ),
    ),
    Signal(
        key="redis_evictions",
        adapter="redis",
        alert="SparkiRedisEvictionsHigh",
        title="Redis evictions",
        value=REDIS_EVICT_RATE,
        direction="above",
        unit="per_second",
        window_minutes=5,
        labels=("target",),
        summary="Redis {{ $labels.target }} evicts keys at over [threshold]",
        description=(
            "Redis {{ $labels.target }} evicts keys at [value] (threshold [threshold] for"
            " [for]): the working set does not fit in maxmemory."
        ),
        symptom=False,
    ),
    Signal(
        key="redis_hit_ratio",
        adapter="redis",
        alert="SparkiRedisHitRatioLow",
        title="Redis keyspace hit ratio",
        value=REDIS_HIT_RATIO,
        direction="below",
        unit="ratio",
        window_minutes=5,
        labels=("target",),
        summary="Redis {{ $labels.target }} hit ratio below [threshold]",
        description=(
            "Only [value] of key lookups on {{ $labels.target }} hit (threshold [threshold]"
            " for [for])."
        ),
        guard=REDIS_LOOKUP_RATE,
        symptom=False,
    ),
    Signal(
        key="redis_clients",
        adapter="redis",
        alert="SparkiRedisClientsHigh",
        title="Redis clients / maxclients",
        value=REDIS_CLIENT_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "node"),
        summary="Redis {{ $labels.target }} uses over [threshold] of maxclients",
        description=(
            "Client connections on Redis {{ $labels.target }} (node {{ $labels.node }})"
            " are at [value] of maxclients (threshold [threshold] for [for]); at 100 %"
            " new connections are rejected."
        ),
    ),
    Signal(
        key="redis_rejected_connections",
        adapter="redis",
        alert="SparkiRedisConnectionsRejected",
        title="Redis rejected connections",
        value=REDIS_REJECTED_RATE,
        direction="above",
        unit="per_second",
        window_minutes=5,
        labels=("target",),
        summary="Redis {{ $labels.target }} rejects connections (maxclients reached)",
        description=(
            "Redis {{ $labels.target }} rejects [value] new connections (threshold"
            " [threshold] for [for]): maxclients is reached and those clients get an error."
        ),
    ),
    Signal(
        key="redis_replication_link",
        adapter="redis",
        alert="SparkiRedisReplicationLinkDown",
        title="Redis replica link to its primary up",
        value="max without (role) (sparki_redis_replication_link_up)",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "node"),
        summary="Redis replica {{ $labels.target }} lost its link to the primary",
        description=(
            "sparki_redis_replication_link_up is [value] on replica {{ $labels.target }}"
            " (node {{ $labels.node }}) for [for]: master_link_status is down, so it"
            " serves stale data and cannot take over from its primary."
        ),
    ),
    Signal(
        key="redis_persistence_failing",
        adapter="redis",
        alert="SparkiRedisPersistenceFailing",
        title="Redis RDB save and AOF write ok",
        value=REDIS_PERSISTENCE_OK,
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "node"),
        summary="Redis {{ $labels.target }} cannot save its data to disk",
        description=(
            "The last RDB background save or AOF write of Redis {{ $labels.target }}"
            " (node {{ $labels.node }}) failed and has not succeeded since, for [for]"
            " (value [value]): no recent backup on disk, and with"
            " stop-writes-on-bgsave-error the server refuses writes."
        ),
    ),
)

# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {
    "redis_command_latency": "sparki_redis_command_duration_seconds",
}


def dashboard(thresholds: Thresholds) -> dict[str, Any]:
    """The Redis board (dashboards/sparki-redis.json)."""
    from ...generate.dashboards import (
        RATE,
        UP_MAPPINGS,
        Board,
        Query,
        T,
        common_panels,
        datasource_variable,
        histogram_quantiles,
        quantile_queries,
        target_variable,
    )

    b = Board(
        thresholds,
        "sparki-redis",
        "Sparki storage / Redis",
        "Redis and Valkey targets: server-side command latency, memory, evictions, hit "
        "ratio and throughput.",
        [datasource_variable(), target_variable("redis")],
    )
    common_panels(b, "redis")
    b.row("Cluster (Redis Cluster targets only)")
    b.stat(
        "Cluster nodes up",
        "none",
        "1 when the exporter could poll the node; a down node fails its slots' clients"
        " while the target as a whole still polls.",
        [Query(f"max without (role) (sparki_redis_node_up{T})", "{{target}} {{node}}")],
        signal="redis_node_down",
        width=12,
        mappings=UP_MAPPINGS,
    )
    b.stat(
        "Cluster state",
        "none",
        "1 when CLUSTER INFO reports cluster_state:ok.",
        [Query(f"sparki_redis_cluster_state_ok{T}", "{{target}}")],
        signal="redis_cluster_state",
        width=12,
        mappings=UP_MAPPINGS,
    )
    b.row("Latency")
    b.graph(
        "Command latency p50 / p95 / p99",
        "s",
        "Server-side latency over all commands, from LATENCY HISTOGRAM.",
        quantile_queries(REDIS_LATENCY, T, "{{target}}"),
        signal="redis_command_latency",
    )
    b.graph(
        "Command latency p95 by command",
        "s",
        "95th percentile per command (the capped set; the rest is 'other').",
        [
            Query(
                "histogram_quantile(0.95, sum by (le, target, cmd) "
                f"(rate(sparki_redis_command_duration_seconds_bucket{T}[{RATE}])))",
                "{{target}} {{cmd}}",
            )
        ],
        signal="redis_command_latency",
    )
    b.graph(
        "PING round trip p50 / p95 / p99",
        "s",
        "Round trip of the PING the exporter sends every poll, network included.",
        histogram_quantiles("sparki_redis_probe_duration_seconds", T, "target", "{{target}}"),
    )
    b.graph(
        "Commands",
        "ops",
        "Commands processed per second.",
        [Query(f"{REDIS_CMD_RATE}{T}", "{{target}}")],
    )
    b.row("Memory and keyspace")
    b.graph(
        "Memory used / limit",
        "percentunit",
        "used_memory as a share of maxmemory, or of the host's memory where maxmemory is unset.",
        [Query(f"{REDIS_MEM_UTIL}{T}", "{{target}} {{node}}")],
        signal="redis_memory",
        maximum=1,
    )
    b.graph(
        "Memory",
        "bytes",
        "used_memory and maxmemory (maxmemory only where it is set).",
        [
            Query(f"sparki_redis_memory_used_bytes{T}", "{{target}} {{node}} used"),
            Query(f"sparki_redis_memory_max_bytes{T} > 0", "{{target}} {{node}} maxmemory"),
        ],
    )
    b.graph(
        "Evictions",
        "ops",
        "Keys evicted per second because of maxmemory.",
        [Query(f"{REDIS_EVICT_RATE}{T}", "{{target}}")],
        signal="redis_evictions",
    )
    b.graph(
        "Keyspace hit ratio",
        "percentunit",
        "Share of key lookups that found the key (shown while there are lookups).",
        [Query(f"{REDIS_HIT_RATIO}{T}", "{{target}}")],
        signal="redis_hit_ratio",
        minimum=None,
        maximum=1,
    )
    b.graph(
        "Key lookups",
        "ops",
        "Keyspace hits plus misses per second.",
        [Query(f"{REDIS_LOOKUP_RATE}{T}", "{{target}}")],
    )
    b.graph(
        "Connected clients",
        "short",
        "Client connections, the exporter's own included.",
        [Query(f"sparki_redis_connected_clients{T}", "{{target}} {{node}}")],
    )
    b.row("Clients")
    b.graph(
        "Clients / maxclients",
        "percentunit",
        "Client connections as a share of maxclients, per node.",
        [Query(f"{REDIS_CLIENT_UTIL}{T}", "{{target}} {{node}}")],
        signal="redis_clients",
        maximum=1,
    )
    b.graph(
        "Rejected connections",
        "ops",
        "New connections refused per second because maxclients was reached.",
        [Query(f"{REDIS_REJECTED_RATE}{T}", "{{target}}")],
        signal="redis_rejected_connections",
    )
    b.graph(
        "Connected and blocked clients",
        "short",
        "Connections, maxclients, and clients waiting in a blocking command (BLPOP, XREAD"
        " BLOCK, WAIT).",
        [
            Query(f"sparki_redis_connected_clients{T}", "{{target}} {{node}} connected"),
            Query(f"sparki_redis_blocked_clients{T}", "{{target}} {{node}} blocked"),
            Query(f"sparki_redis_max_clients{T}", "{{target}} {{node}} maxclients"),
        ],
    )
    b.graph(
        "RSS and fragmentation",
        "none",
        "mem_fragmentation_ratio (RSS / used_memory): well above 1 is fragmentation, below"
        " 1 means the server swaps.",
        [Query(f"sparki_redis_memory_fragmentation_ratio{T}", "{{target}} {{node}}")],
        minimum=None,
    )
    b.row("Replication")
    b.stat(
        "Replica link to primary",
        "none",
        "Replicas only: 1 while master_link_status is up.",
        [Query(f"max without (role) (sparki_redis_replication_link_up{T})", "{{target}} {{node}}")],
        signal="redis_replication_link",
        width=12,
        mappings=UP_MAPPINGS,
    )
    b.stat(
        "Connected replicas",
        "short",
        "Replicas connected to each primary (connected_slaves).",
        [Query(f"sparki_redis_connected_replicas{T} > 0", "{{target}} {{node}}")],
        width=12,
    )
    b.graph(
        "Replica lag",
        "bytes",
        "How far each replica's acknowledged offset is behind its primary's.",
        [Query(f"sparki_redis_replica_lag_bytes{T}", "{{target}} {{node}} {{replica}}")],
    )
    b.graph(
        "Replica last contact",
        "s",
        "Seconds since a replica last heard from its primary (link up) or since its link"
        " went down.",
        [
            Query(f"sparki_redis_replication_last_io_seconds{T}", "{{target}} {{node}} io"),
            Query(f"sparki_redis_replication_link_down_seconds{T}", "{{target}} {{node}} down"),
        ],
    )
    b.row("Persistence")
    b.stat(
        "RDB save and AOF write",
        "none",
        "0 when the last RDB background save (or, AOF on, the last AOF write) failed.",
        [Query(persistence_ok(T), "{{target}} {{node}}")],
        signal="redis_persistence_failing",
        width=12,
        mappings=UP_MAPPINGS,
    )
    b.graph(
        "Since the last RDB save",
        "s",
        "Age of the last successful RDB save; writes not in it are lost on a restart without AOF.",
        [
            Query(
                f"time() - sparki_redis_rdb_last_save_timestamp_seconds{T}",
                "{{target}} {{node}}",
            )
        ],
    )
    b.graph(
        "Changes since the last save",
        "short",
        "Writes not yet in an RDB snapshot (rdb_changes_since_last_save).",
        [Query(f"sparki_redis_rdb_changes_since_last_save{T}", "{{target}} {{node}}")],
    )
    b.graph(
        "AOF enabled",
        "none",
        "1 where the append-only file is on.",
        [Query(f"sparki_redis_aof_enabled{T}", "{{target}} {{node}}")],
        maximum=1,
    )
    b.row("Errors and slow log")
    b.graph(
        "Error replies by prefix",
        "ops",
        "Error replies sent per second, by error prefix (ERR, WRONGTYPE, NOPERM, OOM, ...).",
        [
            Query(
                f"sum by (target, prefix) (rate(sparki_redis_errors_total{T}[{RATE}])) > 0",
                "{{target}} {{prefix}}",
            )
        ],
    )
    b.graph(
        "Slow commands",
        "ops",
        "Commands logged as slower than slowlog-log-slower-than, per second.",
        [
            Query(
                f"sum by (target) (rate(sparki_redis_slowlog_entries_total{T}[{RATE}]))",
                "{{target}}",
            )
        ],
    )
    # The keys collectors' rows (streams, ttl), from their part of the catalog.
    from .catalog_keys import keys_rows

    keys_rows(b, thresholds)
    return b.build()


def synth(signal: Signal, st: SignalThresholds) -> Synth:
    """Input series for the generated promtool cases of the Redis signals."""
    from ...generate.promtests import (
        Fn,
        Synth,
        _const,
        _counter,
        _gauge,
        _Histogram,
        _ratio_counters,
    )

    key = signal.key
    if key == "redis_command_latency":
        h = _Histogram(st)
        labels = {"target": "cache"}
        # Two commands on two nodes of a cluster target: the rule sums both away.
        comps = h.components(
            "sparki_redis_command_duration_seconds",
            [
                {**labels, "node": "10.0.0.1:6379", "role": "primary", "cmd": "get"},
                {**labels, "node": "10.0.0.2:6379", "role": "primary", "cmd": "set"},
            ],
        )
        return Synth(tuple(comps), labels, h.realized, volume=h.volume)
    if key == "redis_node_down":
        labels = {"target": "cache", "node": "10.0.0.1:6379"}
        return Synth(
            (
                _gauge("sparki_redis_node_up", {**labels, "role": "primary"}),
                # Its healthy neighbour never alerts.
                _gauge(
                    "sparki_redis_node_up",
                    {**labels, "node": "10.0.0.2:6379", "role": "primary"},
                    _const(1.0),
                ),
            ),
            labels,
        )
    if key == "redis_cluster_state":
        labels = {"target": "cache"}
        return Synth((_gauge("sparki_redis_cluster_state_ok", labels),), labels)
    if key == "redis_memory":
        labels = {"target": "cache", "node": "10.0.0.1:6379"}

        def used_bytes(v: float) -> float:
            return float(round(v * 1_000_000))

        node = {**labels, "role": "primary"}
        return Synth(
            (
                _gauge("sparki_redis_memory_used_bytes", node, lambda v, m, s: used_bytes(v)),
                _gauge("sparki_redis_memory_max_bytes", node, _const(1_000_000.0)),
            ),
            labels,
            lambda v: used_bytes(v) / 1_000_000,
            traps=(
                (
                    "maxmemory unset (0) and no total_system_memory: no ratio, no alert,"
                    " however much memory is used",
                    (
                        _gauge("sparki_redis_memory_used_bytes", node, _const(5e9)),
                        _gauge("sparki_redis_memory_max_bytes", node, _const(0.0)),
                    ),
                ),
            ),
        )
    if key == "redis_evictions":
        labels = {"target": "cache"}

        # Spread over the two nodes of a cluster target; the rule sums them.
        def per_minute(share: float) -> Fn:
            return lambda v, m, s: round(v * 60 * share, 6)

        return Synth(
            tuple(
                _counter(
                    "sparki_redis_evicted_keys_total",
                    {**labels, "node": node, "role": "primary"},
                    per_minute(share),
                )
                for node, share in (("10.0.0.1:6379", 0.25), ("10.0.0.2:6379", 0.75))
            ),
            labels,
        )
    if key == "redis_hit_ratio":
        labels = {"target": "cache"}
        return Synth(
            tuple(
                _ratio_counters(
                    ("sparki_redis_keyspace_hits_total", labels),
                    [("sparki_redis_keyspace_misses_total", labels, lambda v: 1 - v)],
                    1000.0,
                )
            ),
            labels,
            volume=1000.0,
        )
    if key == "redis_clients":
        labels = {"target": "cache", "node": "10.0.0.1:6379"}
        node = {**labels, "role": "primary"}

        def clients(v: float) -> float:
            return float(round(v * 1000))

        return Synth(
            (
                _gauge("sparki_redis_connected_clients", node, lambda v, m, s: clients(v)),
                _gauge("sparki_redis_max_clients", node, _const(1000.0)),
            ),
            labels,
            lambda v: clients(v) / 1000,
            traps=(
                (
                    "maxclients unknown (0): no ratio, no alert, however many clients",
                    (
                        _gauge("sparki_redis_connected_clients", node, _const(5000.0)),
                        _gauge("sparki_redis_max_clients", node, _const(0.0)),
                    ),
                ),
            ),
        )
    if key == "redis_rejected_connections":
        labels = {"target": "cache"}

        # Spread over the two nodes of a cluster target; the rule sums them.
        def rejected(share: float) -> Fn:
            return lambda v, m, s: round(v * 60 * share, 6)

        return Synth(
            tuple(
                _counter(
                    "sparki_redis_rejected_connections_total",
                    {**labels, "node": node, "role": "primary"},
                    rejected(share),
                )
                for node, share in (("10.0.0.1:6379", 0.5), ("10.0.0.2:6379", 0.5))
            ),
            labels,
        )
    if key == "redis_replication_link":
        labels = {"target": "cache", "node": "10.0.0.2:6379"}
        return Synth(
            (
                _gauge("sparki_redis_replication_link_up", {**labels, "role": "replica"}),
                # Another replica whose link is up never alerts.
                _gauge(
                    "sparki_redis_replication_link_up",
                    {**labels, "node": "10.0.0.3:6379", "role": "replica"},
                    _const(1.0),
                ),
            ),
            labels,
        )
    if key == "redis_persistence_failing":
        labels = {"target": "cache", "node": "10.0.0.1:6379"}
        node = {**labels, "role": "primary"}
        # RDB only (AOF off, so no AOF series): the save status alone decides.
        return Synth(
            (_gauge("sparki_redis_rdb_last_bgsave_ok", node),),
            labels,
        )
    if key in {s.key for s in KEYS_SIGNALS}:
        return synth_keys(signal, st)  # type: ignore[no-any-return]
    raise KeyError(f"no test input synthesizer for signal {key}")


def scenarios(thresholds: Thresholds) -> list[dict[str, Any]]:
    """Redis incidents the per-threshold cases cannot express: maxmemory unset judged
    against the host's memory, and a failover that must not restart the memory alert."""
    from ...generate.catalog import SIGNALS_BY_KEY
    from ...generate.promtests import JOB, _expected, _fmt, _labels_text, _never, past

    out: list[dict[str, Any]] = []
    st = thresholds["redis_memory"]
    node = {"target": "cache", "node": "10.0.0.3:6379", "role": "primary", **JOB}
    crit = st.level("critical")
    assert crit is not None
    used = past(SIGNALS_BY_KEY["redis_memory"], crit)
    at = max(lv.hold_minutes for lv in st.levels) + 1
    out.append(
        {
            "name": "SparkiRedisMemoryHigh: maxmemory unset (0) is judged against the"
            " host's total_system_memory",
            "interval": "1m",
            "input_series": [
                {
                    "series": _labels_text("sparki_redis_memory_used_bytes", node),
                    "values": f"{_fmt(used * 1_000_000)}x{at}",
                },
                {
                    "series": _labels_text("sparki_redis_memory_max_bytes", node),
                    "values": f"0x{at}",
                },
                {
                    "series": _labels_text("sparki_redis_system_memory_bytes", node),
                    "values": f"1000000x{at}",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": f"{at}m",
                    "alertname": "SparkiRedisMemoryHigh",
                    "exp_alerts": [
                        _expected(
                            thresholds,
                            "redis_memory",
                            lv.severity,
                            {k: v for k, v in node.items() if k != "role"},
                            used,
                        )
                        for lv in st.levels
                    ],
                }
            ],
        }
    )
    labels = {"target": "cache", "node": "10.0.0.1:6379"}
    ratio = 0.97
    switch, end = 8, 25
    values = [ratio] * (end + 1)
    failover: list[dict[str, str]] = []
    for role, start, stop in (("primary", 0, switch), ("replica", switch + 1, end)):
        node = {**labels, "role": role}
        for name, fn in (
            ("sparki_redis_memory_used_bytes", ratio * 1_000_000),
            ("sparki_redis_memory_max_bytes", 1_000_000.0),
        ):
            text = " ".join(_fmt(fn) if start <= m <= stop else "_" for m in range(len(values)))
            failover.append({"series": _labels_text(name, {**node, **JOB}), "values": text})
    out.append(
        {
            "name": "SparkiRedisMemoryHigh: a failover (role primary -> replica) neither"
            " resolves nor restarts the alert",
            "interval": "1m",
            "input_series": failover,
            "alert_rule_test": [
                {
                    "eval_time": f"{end}m",
                    "alertname": "SparkiRedisMemoryHigh",
                    "exp_alerts": [
                        _expected(thresholds, "redis_memory", lv.severity, {**labels, **JOB}, ratio)
                        for lv in st.levels
                    ],
                }
            ],
            "promql_expr_test": [
                _never("SparkiRedisMemoryHigh", "pending", lv.severity, end, end - 7)
                for lv in st.levels
            ],
        }
    )
    st = thresholds["redis_persistence_failing"]
    node = {"target": "cache", "node": "10.0.0.4:6379", "role": "primary", **JOB}
    at = max(lv.hold_minutes for lv in st.levels) + 1
    out.append(
        {
            "name": "SparkiRedisPersistenceFailing: an AOF write error fires while RDB"
            " saves succeed",
            "interval": "1m",
            "input_series": [
                {
                    "series": _labels_text("sparki_redis_rdb_last_bgsave_ok", node),
                    "values": f"1x{at}",
                },
                {
                    "series": _labels_text("sparki_redis_aof_last_write_ok", node),
                    "values": f"0x{at}",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": f"{at}m",
                    "alertname": "SparkiRedisPersistenceFailing",
                    "exp_alerts": [
                        _expected(
                            thresholds,
                            "redis_persistence_failing",
                            lv.severity,
                            {k: v for k, v in node.items() if k != "role"},
                            0,
                        )
                        for lv in st.levels
                    ],
                }
            ],
        }
    )
    return out


from .catalog_keys import (  # noqa: E402 (joined after the main part)
    KEYS_COLLECTORS,
    KEYS_RECORDINGS,
    KEYS_SIGNALS,
    synth_keys,
)

COLLECTORS = COLLECTORS + KEYS_COLLECTORS
RECORDINGS = RECORDINGS + KEYS_RECORDINGS
SIGNALS = SIGNALS + KEYS_SIGNALS
