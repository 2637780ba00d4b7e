"""What the Memcached adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
it imports no driver and nothing of exporter.generate at module level (the dashboard,
promtool inputs import the generator's helpers inside their functions).
"""

from __future__ import annotations

from typing import Any

from ...catalog_model import Recording, Signal, quantiles
from ...collector import CollectorSpec

TITLE = "Memcached"
# What the command line's --help names: the servers polled, and the variables any one
# of which configures a target without a config file (spec.from_env).
SERVERS = "Memcached"
ENV_VARIABLES = ("MEMCACHED_SERVERS",)

COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "stats",
        "stats: memory vs limit, items, hits and misses, evictions, connections, traffic, "
        "per-command counters",
    ),
    CollectorSpec("slabs", "stats slabs: memory and chunks per slab class, total malloced"),
    CollectorSpec("settings", "stats settings: evictions on/off, item size max, auth, TLS"),
    CollectorSpec("canary", "set, get and delete of the exporter's own key, timed per operation"),
)

CANARY = "sparki_memcached_canary_duration_seconds"
LATENCY = "target_operation:sparki_memcached_canary_duration_seconds:{q}_rate5m"
CANARY_OBS_RATE = "target_operation:sparki_memcached_canary_duration_seconds:rate5m"
CANARY_RATE = "target_operation:sparki_memcached_canary_operations:rate5m"
CANARY_FAIL = "target_operation:sparki_memcached_canary_errors:ratio_rate5m"
MEM_UTIL = "target_node:sparki_memcached_memory:utilization"
CONN_UTIL = "target_node:sparki_memcached_connections:utilization"
EVICT_RATE = "target:sparki_memcached_evictions:rate5m"
LOOKUP_RATE = "target:sparki_memcached_get_lookups:rate5m"
HIT_RATIO = "target:sparki_memcached_get_hits:ratio_rate5m"
CMD_RATE = "target_command:sparki_memcached_commands:rate5m"

_OPS = "sum without (node) (rate(sparki_memcached_canary_operations_total[5m]))"
_LOOKUPS = (
    "sum without (node) (rate(sparki_memcached_get_hits_total[5m])"
    " + rate(sparki_memcached_get_misses_total[5m]))"
)

RECORDINGS: tuple[Recording, ...] = (
    # The canary runs on every node; per-target rules sum the nodes away, keeping the
    # operation (a slow set and a fast get are different stories).
    *quantiles("memcached", "target_operation", CANARY, "5m", "node"),
    Recording("memcached", CANARY_OBS_RATE, f"sum without (node) (rate({CANARY}_count[5m]))"),
    Recording("memcached", CANARY_RATE, _OPS),
    Recording(
        "memcached",
        CANARY_FAIL,
        # Operations that never failed have no error series: count them as 0.
        "(sum without (node, reason) (rate(sparki_memcached_canary_errors_total[5m]))"
        f" or {_OPS} * 0) / ({_OPS} > 0)",
    ),
    # Memory and connections are per node: each node has its own limits.
    Recording(
        "memcached",
        MEM_UTIL,
        "sparki_memcached_memory_used_bytes / (sparki_memcached_memory_limit_bytes > 0)",
    ),
    Recording(
        "memcached",
        CONN_UTIL,
        "sparki_memcached_connections / (sparki_memcached_max_connections > 0)",
    ),
    Recording(
        "memcached",
        EVICT_RATE,
        "sum without (node) (rate(sparki_memcached_evictions_total[5m]))",
    ),
    Recording("memcached", LOOKUP_RATE, _LOOKUPS),
    Recording(
        "memcached",
        HIT_RATIO,
        f"sum without (node) (rate(sparki_memcached_get_hits_total[5m])) / ({_LOOKUPS} > 0)",
    ),
    Recording(
        "memcached",
        CMD_RATE,
        "sum without (node) (rate(sparki_memcached_commands_total[5m]))",
    ),
)

SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="memcached_canary_latency",
        adapter="memcached",
        alert="SparkiMemcachedCanaryLatencyHigh",
        title="Memcached canary latency p95",
        value=LATENCY.format(q="p95"),
        direction="above",
        unit="seconds",
        window_minutes=5,
        labels=("target", "operation"),
        summary=(
            "Memcached canary {{ $labels.operation }} p95 above [threshold] on {{ $labels.target }}"
        ),
        description=(
            "The 95th percentile round trip of the exporter's canary"
            " {{ $labels.operation }} over the nodes of {{ $labels.target }} is [value]"
            " (threshold [threshold] for [for])."
        ),
        guard=CANARY_OBS_RATE,
    ),
    Signal(
        key="memcached_canary_failure_ratio",
        adapter="memcached",
        alert="SparkiMemcachedCanaryFailing",
        title="Memcached canary failure ratio",
        value=CANARY_FAIL,
        direction="above",
        unit="ratio",
        window_minutes=5,
        labels=("target", "operation"),
        summary=(
            "Memcached canary {{ $labels.operation }} fails over [threshold] on"
            " {{ $labels.target }}"
        ),
        description=(
            "[value] of the exporter's canary {{ $labels.operation }} operations on"
            " {{ $labels.target }} failed (threshold [threshold] for [for]);"
            " sparki_memcached_canary_errors_total's reason and node say where and why."
        ),
    ),
    Signal(
        key="memcached_memory",
        adapter="memcached",
        alert="SparkiMemcachedMemoryHigh",
        title="Memcached memory used / limit_maxbytes",
        value=MEM_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "node"),
        summary="Memcached {{ $labels.target }} node {{ $labels.node }} uses over [threshold]"
        " of its memory limit",
        description=(
            "Items on node {{ $labels.node }} of {{ $labels.target }} use [value] of"
            " limit_maxbytes (threshold [threshold] for [for]); at the limit memcached"
            " evicts (or, with -M, refuses stores)."
        ),
    ),
    Signal(
        key="memcached_connections",
        adapter="memcached",
        alert="SparkiMemcachedConnectionsHigh",
        title="Memcached connections / max_connections",
        value=CONN_UTIL,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target", "node"),
        summary="Memcached {{ $labels.target }} node {{ $labels.node }} uses over [threshold]"
        " of its connections",
        description=(
            "Client connections on node {{ $labels.node }} of {{ $labels.target }} are at"
            " [value] of max_connections (threshold [threshold] for [for]); at the limit"
            " the node stops accepting connections (listen_disabled)."
        ),
    ),
    Signal(
        key="memcached_node_down",
        adapter="memcached",
        alert="SparkiMemcachedNodeDown",
        title="Memcached node reachable",
        value="sparki_memcached_node_up",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("target", "node"),
        summary="Memcached node {{ $labels.node }} of {{ $labels.target }} is unreachable",
        description=(
            "sparki_memcached_node_up is [value] for node {{ $labels.node }} of"
            " {{ $labels.target }} for [for]: every key the clients hash to it misses"
            " (or fails), and its load lands on the database behind the cache."
        ),
    ),
    Signal(
        key="memcached_evictions",
        adapter="memcached",
        alert="SparkiMemcachedEvictionsHigh",
        title="Memcached evictions",
        value=EVICT_RATE,
        direction="above",
        unit="per_second",
        window_minutes=5,
        labels=("target",),
        summary="Memcached {{ $labels.target }} evicts items at over [threshold]",
        description=(
            "Memcached {{ $labels.target }} evicts items before their TTL at [value]"
            " (threshold [threshold] for [for]): the working set does not fit in memory."
        ),
        symptom=False,
    ),
)

# Signals whose thresholds must be bucket edges of a histogram: signal key -> metric.
HISTOGRAM_SIGNALS: dict[str, str] = {"memcached_canary_latency": CANARY}


def dashboard(thresholds: Any) -> dict[str, Any]:
    """The Memcached board: nodes, canary, memory, connections, traffic, slabs."""
    from ...generate.dashboards import (
        RATE,
        UP_MAPPINGS,
        Board,
        Query,
        common_panels,
        datasource_variable,
        quantile_queries,
        target_variable,
    )

    t = '{target=~"$target"}'
    b = Board(
        thresholds,
        "sparki-memcached",
        "Sparki storage / Memcached",
        "Memcached targets (lists of nodes): the exporter's canary latency, memory and "
        "evictions, connections, hit ratio and traffic, per node.",
        [datasource_variable(), target_variable("memcached")],
    )
    common_panels(b, "memcached")
    b.row("Nodes")
    b.stat(
        "Nodes up",
        "none",
        "1 when the exporter could poll the node; a down node fails the keys its clients"
        " hash to while the target as a whole still polls.",
        [Query(f"sparki_memcached_node_up{t}", "{{target}} {{node}}")],
        signal="memcached_node_down",
        width=24,
        mappings=UP_MAPPINGS,
    )
    b.row("Canary")
    b.graph(
        "Canary latency p50 / p95 / p99",
        "s",
        "Round trip of the exporter's own set, get and delete, per operation, over the nodes.",
        quantile_queries(LATENCY, t, "{{target}} {{operation}}"),
        signal="memcached_canary_latency",
    )
    b.graph(
        "Canary failure ratio",
        "percentunit",
        "Share of canary operations that failed, per operation.",
        [Query(f"{CANARY_FAIL}{t}", "{{target}} {{operation}}")],
        signal="memcached_canary_failure_ratio",
        maximum=1,
    )
    b.graph(
        "Canary p95 by node",
        "s",
        "95th percentile canary round trip per node and operation: one slow node shows here.",
        [
            Query(
                "histogram_quantile(0.95, sum by (le, target, node, operation) "
                f"(rate({CANARY}_bucket{t}[{RATE}])))",
                "{{target}} {{node}} {{operation}}",
            )
        ],
        signal="memcached_canary_latency",
    )
    b.graph(
        "Canary failures by reason",
        "ops",
        "Failed canary operations per second, by node, operation and reason.",
        [
            Query(
                "sum by (target, node, operation, reason) "
                f"(rate(sparki_memcached_canary_errors_total{t}[{RATE}])) > 0",
                "{{target}} {{node}} {{operation}} {{reason}}",
            )
        ],
    )
    b.row("Memory and items")
    b.graph(
        "Memory used / limit",
        "percentunit",
        "Item bytes as a share of limit_maxbytes, per node.",
        [Query(f"{MEM_UTIL}{t}", "{{target}} {{node}}")],
        signal="memcached_memory",
        maximum=1,
    )
    b.graph(
        "Evictions",
        "ops",
        "Items evicted per second before their TTL, because memory was full.",
        [Query(f"{EVICT_RATE}{t}", "{{target}}")],
        signal="memcached_evictions",
    )
    b.graph(
        "Memory",
        "bytes",
        "Item bytes, slab memory allocated (malloced) and the limit, per node.",
        [
            Query(f"sparki_memcached_memory_used_bytes{t}", "{{target}} {{node}} items"),
            Query(f"sparki_memcached_malloced_bytes{t}", "{{target}} {{node}} malloced"),
            Query(f"sparki_memcached_memory_limit_bytes{t}", "{{target}} {{node}} limit"),
        ],
    )
    b.graph(
        "Items",
        "short",
        "Items stored per node.",
        [Query(f"sparki_memcached_items{t}", "{{target}} {{node}}")],
    )
    b.graph(
        "Get hit ratio",
        "percentunit",
        "Share of get lookups that found their key (shown while there are lookups).",
        [Query(f"{HIT_RATIO}{t}", "{{target}}")],
        minimum=None,
        maximum=1,
    )
    b.graph(
        "Reclaimed and expired unfetched",
        "ops",
        "Expired items whose memory was reused, and items that expired or were evicted"
        " without ever being read (wasted stores).",
        [
            Query(
                f"sum by (target) (rate(sparki_memcached_reclaimed_total{t}[{RATE}]))",
                "{{target}} reclaimed",
            ),
            Query(
                f"sum by (target) (rate(sparki_memcached_expired_unfetched_total{t}[{RATE}]))",
                "{{target}} expired unfetched",
            ),
            Query(
                f"sum by (target) (rate(sparki_memcached_evicted_unfetched_total{t}[{RATE}]))",
                "{{target}} evicted unfetched",
            ),
        ],
    )
    b.row("Connections and traffic")
    b.graph(
        "Connections / max_connections",
        "percentunit",
        "Client connections as a share of max_connections, per node.",
        [Query(f"{CONN_UTIL}{t}", "{{target}} {{node}}")],
        signal="memcached_connections",
        maximum=1,
    )
    b.graph(
        "Refused connections",
        "ops",
        "Connections rejected at max_connections, and times the node stopped listening.",
        [
            Query(
                f"sum by (target, node) (rate(sparki_memcached_rejected_connections_total{t}"
                f"[{RATE}]))",
                "{{target}} {{node}} rejected",
            ),
            Query(
                f"sum by (target, node) (rate(sparki_memcached_listen_disabled_total{t}[{RATE}]))",
                "{{target}} {{node}} listen disabled",
            ),
        ],
    )
    b.graph(
        "Commands",
        "ops",
        "Commands per second, by command.",
        [Query(f"{CMD_RATE}{t}", "{{target}} {{command}}")],
    )
    b.graph(
        "Network",
        "Bps",
        "Bytes read and written per second by the servers.",
        [
            Query(
                f"sum by (target) (rate(sparki_memcached_read_bytes_total{t}[{RATE}]))",
                "{{target}} read",
            ),
            Query(
                f"sum by (target) (rate(sparki_memcached_written_bytes_total{t}[{RATE}]))",
                "{{target}} written",
            ),
        ],
    )
    b.row("Slabs")
    b.graph(
        "Memory by slab class",
        "bytes",
        "Memory assigned to each slab class: a node evicts in a class that is full even"
        " when others have free chunks.",
        [
            Query(
                f"sum by (target, slab) (sparki_memcached_slab_memory_bytes{t})",
                "{{target}} slab {{slab}}",
            )
        ],
        stack=True,
        width=24,
    )
    return b.build()


def synth(signal: Any, st: Any) -> Any:
    """Input series for the promtool cases of this adapter's signals."""
    from ...generate.promtests import Synth, _const, _counter, _gauge, _Histogram, _ratio_counters

    key = signal.key
    if key == "memcached_canary_latency":
        h = _Histogram(st)
        labels = {"target": "sessions", "operation": "get"}
        # Two nodes of one target: the rule sums them away.
        comps = h.components(CANARY, [{**labels, "node": "0"}, {**labels, "node": "1"}])
        return Synth(tuple(comps), labels, h.realized, volume=h.volume)
    if key == "memcached_canary_failure_ratio":
        labels = {"target": "sessions", "operation": "set"}
        where = {**labels, "node": "0"}
        ops = "sparki_memcached_canary_operations_total"
        errors = "sparki_memcached_canary_errors_total"
        return Synth(
            (
                *_ratio_counters(
                    (errors, {**where, "reason": "server_error"}),
                    [(ops, where, lambda v: 1.0)],
                    10.0,
                ),
                # A healthy operation beside it has no error series at all: ratio 0.
                _counter(ops, {**where, "operation": "get"}, lambda v, m, s: 600.0),
            ),
            labels,
            traps=(
                (
                    "no canary traffic at all: no ratio (no division by zero), no alert",
                    (
                        _counter(ops, where, lambda v, m, s: 0.0),
                        _counter(errors, {**where, "reason": "timeout"}, lambda v, m, s: 0.0),
                    ),
                ),
            ),
        )
    if key in ("memcached_memory", "memcached_connections"):
        labels = {"target": "sessions", "node": "1"}
        used_name, limit_name, limit = (
            ("sparki_memcached_memory_used_bytes", "sparki_memcached_memory_limit_bytes", 1e6)
            if key == "memcached_memory"
            else ("sparki_memcached_connections", "sparki_memcached_max_connections", 1000.0)
        )

        def used(v: float) -> float:
            return float(round(v * limit))

        return Synth(
            (
                _gauge(used_name, labels, lambda v, m, s: used(v)),
                _gauge(limit_name, labels, _const(limit)),
            ),
            labels,
            lambda v: used(v) / limit,
            traps=(
                (
                    "limit 0 (unknown): no ratio, no alert",
                    (
                        _gauge(used_name, labels, _const(5e9)),
                        _gauge(limit_name, labels, _const(0.0)),
                    ),
                ),
            ),
        )
    if key == "memcached_node_down":
        labels = {"target": "sessions", "node": "cache-b"}
        return Synth(
            (
                _gauge("sparki_memcached_node_up", labels),
                # Its healthy neighbour never alerts.
                _gauge("sparki_memcached_node_up", {**labels, "node": "cache-a"}, _const(1.0)),
            ),
            labels,
        )
    if key == "memcached_evictions":
        labels = {"target": "sessions"}

        # Spread over two nodes of the target; the rule sums them.
        def per_minute(share: float) -> Any:
            return lambda v, m, s: round(v * 60 * share, 6)

        return Synth(
            tuple(
                _counter("sparki_memcached_evictions_total", {**labels, "node": n}, per_minute(f))
                for n, f in (("0", 0.25), ("1", 0.75))
            ),
            labels,
        )
    raise KeyError(f"no test input synthesizer for signal {key}")
