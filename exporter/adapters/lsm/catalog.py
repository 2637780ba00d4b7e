"""What the LSM store adapter records, alerts on and shows, without numbers or drivers.

Read by the generator (exporter.generate) and by the command line (collector names);
the generator's helpers are imported inside dashboard(), synth() and scenarios() only,
so importing this module loads neither aiohttp's client nor the generator.
"""

from __future__ import annotations

from typing import Any

from ...catalog_model import Recording, Signal
from ...collector import CollectorSpec

TITLE = "LSM stores"
# What the command line's --help names: the servers polled, and the variables any one
# of which configures a target without a config file (spec.from_env).
SERVERS = "embedded LSM stores (Badger, LevelDB, Pebble)"
ENV_VARIABLES = ("LSM_DIRECTORY",)

COLLECTORS: tuple[CollectorSpec, ...] = (
    CollectorSpec(
        "directory", "the store's files by kind, table count and the filesystem's free space"
    ),
    CollectorSpec("expvar", "Badger's sizes and counters from the host's Go expvar (/debug/vars)"),
)

BYTES = "sparki_lsm_directory_bytes"
TABLES = "sparki_lsm_table_files"
BLOCKED = "sparki_lsm_badger_blocked_puts_total"
DISK_USED = "target:sparki_lsm_filesystem:used_ratio"
GROWTH = "target_kind:sparki_lsm_directory_bytes:deriv1h"
# Tables and value log growing by the hour while the table count never fell in the hour:
# compaction (which merges tables, so lowers the count) is not running or not keeping up.
# resets() counts every decrease of the gauge between two samples.
GROWTH_NO_COMPACTION = (
    f'(deriv({BYTES}{{kind=~"sst|vlog"}}[1h]) * 3600'
    f" unless on (job, instance, target) resets({TABLES}[1h]) > 0)"
)
BLOCKED_RATE = f"rate({BLOCKED}[5m])"

RECORDINGS: tuple[Recording, ...] = (
    Recording(
        "lsm",
        DISK_USED,
        "1 - sparki_lsm_filesystem_avail_bytes / (sparki_lsm_filesystem_size_bytes > 0)",
    ),
    Recording("lsm", GROWTH, f"deriv({BYTES}[1h])"),
    Recording(
        "lsm",
        "target_dir:sparki_lsm_badger_vlog_size_bytes:deriv1h",
        "deriv(sparki_lsm_badger_vlog_size_bytes[1h])",
    ),
    Recording(
        "lsm",
        "target_dir:sparki_lsm_badger_lsm_size_bytes:deriv1h",
        "deriv(sparki_lsm_badger_lsm_size_bytes[1h])",
    ),
    Recording(
        "lsm", "target:sparki_lsm_badger_puts:rate5m", "rate(sparki_lsm_badger_puts_total[5m])"
    ),
)

SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="lsm_disk_full",
        adapter="lsm",
        alert="SparkiLsmDiskFull",
        title="LSM store filesystem used",
        value=DISK_USED,
        direction="above",
        unit="ratio",
        window_minutes=0,
        labels=("target",),
        summary="The filesystem of LSM store {{ $labels.target }} is over [threshold] full",
        description=(
            "The filesystem holding LSM store {{ $labels.target }} is [value] used (threshold"
            " [threshold] for [for]). A full disk stops the store's flushes and compactions,"
            " and the host service's writes fail."
        ),
    ),
    Signal(
        key="lsm_growth_without_compaction",
        adapter="lsm",
        alert="SparkiLsmGrowingWithoutCompaction",
        title="LSM store growth per hour (no table count decrease in the hour)",
        value=GROWTH_NO_COMPACTION,
        direction="above",
        unit="bytes",
        window_minutes=60,
        labels=("target", "kind"),
        summary="LSM store {{ $labels.target }} grows without compacting ({{ $labels.kind }})",
        description=(
            "The {{ $labels.kind }} files of LSM store {{ $labels.target }} grow by [value] an"
            " hour (threshold [threshold] for [for]) while the table count has not fallen once"
            " in the hour: compaction is not running or not keeping up, and the disk fills."
        ),
        symptom=False,
    ),
    Signal(
        key="lsm_blocked_puts",
        adapter="lsm",
        alert="SparkiLsmBlockedPuts",
        title="Badger blocked puts per second",
        value=BLOCKED_RATE,
        direction="above",
        unit="per_second",
        window_minutes=5,
        labels=("target",),
        summary="Badger store {{ $labels.target }} refuses writes",
        description=(
            "Badger in the host of {{ $labels.target }} counts [value] blocked puts"
            " (threshold [threshold] for [for]): writes of the host service are refused."
        ),
        counter_rate=True,
    ),
)

HISTOGRAM_SIGNALS: dict[str, str] = {}


def dashboard(thresholds: Any) -> dict[str, Any]:
    """The LSM board: polling, disk, directory by kind, growth vs compaction, Badger."""
    from ...generate import dashboards as d

    t = d.T
    b = d.Board(
        thresholds,
        "sparki-lsm",
        "Sparki storage / LSM stores",
        "Embedded Badger, LevelDB and Pebble stores: disk space, store size by file kind,"
        " growth against compaction, and Badger's own counters from the host's expvar.",
        [d.datasource_variable(), d.target_variable("lsm")],
    )
    d.common_panels(b, "lsm")
    b.row("Disk")
    b.graph(
        "Filesystem used",
        "percentunit",
        "1 - available / size of the filesystem holding the store (what df shows as Use%).",
        [d.Query(f"{DISK_USED}{t}", "{{target}}")],
        signal="lsm_disk_full",
        maximum=1,
    )
    b.graph(
        "Store bytes by kind",
        "bytes",
        "Bytes of the store's files by kind, from the directory walk.",
        [d.Query(f"{BYTES}{t}", "{{target}} {{kind}}")],
        stack=True,
    )
    b.row("Growth and compaction")
    b.graph(
        "Growth per hour (tables and value log)",
        "bytes",
        "deriv over an hour of the table and value log bytes, per hour. The alert fires"
        " only while the table count has not fallen in the hour.",
        [d.Query(f'{GROWTH}{{target=~"$target",kind=~"sst|vlog"}} * 3600', "{{target}} {{kind}}")],
        signal="lsm_growth_without_compaction",
        minimum=None,
    )
    b.graph(
        "Table files",
        "none",
        "SSTable files: flushes raise the count, compactions lower it. A count that only"
        " rises while bytes grow is compaction falling behind.",
        [d.Query(f"{TABLES}{t}", "{{target}}")],
    )
    b.graph(
        "Files by kind",
        "none",
        "Files of the store by kind.",
        [d.Query(f"sparki_lsm_directory_files{t}", "{{target}} {{kind}}")],
    )
    b.stat(
        "Walk truncated",
        "none",
        "1 when the directory walk stopped at max_files: the counts are too low.",
        [d.Query(f"sparki_lsm_directory_walk_truncated{t}", "{{target}}")],
        width=12,
    )
    b.row("Badger (expvar)")
    b.graph(
        "Blocked puts per second",
        "none",
        "Badger's blocked puts: writes it refused or held back.",
        [d.Query(f"rate({BLOCKED}{t}[{d.RATE}])", "{{target}}")],
        signal="lsm_blocked_puts",
    )
    b.graph(
        "Puts and gets per second",
        "none",
        "Entries written (with one commit marker per transaction) and gets of the host.",
        [
            d.Query(f"rate(sparki_lsm_badger_puts_total{t}[{d.RATE}])", "puts {{target}}"),
            d.Query(f"rate(sparki_lsm_badger_gets_total{t}[{d.RATE}])", "gets {{target}}"),
        ],
    )
    b.graph(
        "LSM and value log size (Badger's view)",
        "bytes",
        "Badger's own sizes by directory; it recomputes them about once a minute.",
        [
            d.Query(f"sparki_lsm_badger_lsm_size_bytes{t}", "lsm {{target}} {{dir}}"),
            d.Query(f"sparki_lsm_badger_vlog_size_bytes{t}", "vlog {{target}} {{dir}}"),
        ],
    )
    b.graph(
        "Pending writes",
        "none",
        "Write requests queued for Badger's write loop.",
        [d.Query(f"sparki_lsm_badger_pending_writes{t}", "{{target}} {{dir}}")],
    )
    b.graph(
        "Value log I/O bytes per second",
        "Bps",
        "Bytes read from and written to value log files.",
        [
            d.Query(f"rate(sparki_lsm_badger_read_bytes_total{t}[{d.RATE}])", "read {{target}}"),
            d.Query(
                f"rate(sparki_lsm_badger_written_bytes_total{t}[{d.RATE}])", "written {{target}}"
            ),
        ],
    )
    b.graph(
        "LSM gets and bloom filter hits per level",
        "none",
        "Gets that reached each level, and those its bloom filter answered without a read.",
        [
            d.Query(
                f"rate(sparki_lsm_badger_lsm_level_gets_total{t}[{d.RATE}])",
                "gets {{target}} {{level}}",
            ),
            d.Query(
                f"rate(sparki_lsm_badger_lsm_bloom_hits_total{t}[{d.RATE}])",
                "bloom {{target}} {{level}}",
            ),
        ],
    )
    return b.build()


SIZE = 1_000_000_000.0


def synth(signal: Signal, st: Any) -> Any:
    """promtool inputs whose signal value is v, for the generated alert tests."""
    from ...generate import promtests as p

    key = signal.key
    if key == "lsm_disk_full":
        labels = {"target": "edge-cache"}
        return p.Synth(
            (
                p._gauge(
                    "sparki_lsm_filesystem_avail_bytes",
                    labels,
                    lambda v, m, s: float(round((1 - v) * SIZE)),
                ),
                p._gauge("sparki_lsm_filesystem_size_bytes", labels, p._const(SIZE)),
            ),
            labels,
            lambda v: 1 - round((1 - v) * SIZE) / SIZE,
        )
    if key == "lsm_growth_without_compaction":
        labels = {"target": "edge-cache", "kind": "vlog"}
        target = {"target": "edge-cache"}
        # The bytes ramp by v an hour (a whole number of bytes a minute); the table
        # count stays put: no compaction.
        return p.Synth(
            (
                p._counter(BYTES, labels, lambda v, m, s: float(round(v / 60))),
                p._gauge(TABLES, target, p._const(12.0)),
            ),
            labels,
            lambda v: float(round(v / 60) * 60),
            traps=(
                (
                    "the same growth while compaction lowers the table count every 20"
                    " minutes is silent",
                    (
                        p._counter(BYTES, labels, lambda v, m, s: 4e9 / 60),
                        p._gauge(TABLES, target, lambda v, m, s: 10.0 + m % 20),
                    ),
                ),
            ),
        )
    if key == "lsm_blocked_puts":
        labels = {"target": "edge-cache"}
        return p.Synth(
            (p._counter(BLOCKED, labels, lambda v, m, s: round(v * 60, 6)),),
            labels,
        )
    raise KeyError(f"no test input synthesizer for signal {key}")


def scenarios(thresholds: Any) -> list[dict[str, Any]]:
    """LSM incidents the per-threshold cases cannot express: the disk alert while the
    exporter loses the directory (its series vanish), held by keep_firing_for and then
    resolved; and the growth alert ending when compaction runs."""
    from ...generate.promtests import JOB, _expected, _fmt, _labels_text
    from ...generate.thresholds import duration_seconds

    out: list[dict[str, Any]] = []
    st = thresholds["lsm_disk_full"]
    crit = st.level("critical")
    assert crit is not None
    labels = {"target": "edge-cache", **JOB}
    used = 0.97
    hold = max(lv.hold_minutes for lv in st.levels)
    firing_at = hold + 1
    stop = firing_at + 1  # the last minute with data
    keep = duration_seconds(thresholds.keep_firing_for) // 60
    values = [_fmt(round((1 - used) * SIZE)) if m <= stop else "_" for m in range(stop + keep + 8)]
    out.append(
        {
            "name": "SparkiLsmDiskFull: the directory's series vanish while firing: it keeps"
            " firing for keep_firing_for, then resolves",
            "interval": "1m",
            "input_series": [
                {
                    "series": _labels_text("sparki_lsm_filesystem_avail_bytes", labels),
                    "values": " ".join(values),
                },
                {
                    "series": _labels_text("sparki_lsm_filesystem_size_bytes", labels),
                    "values": " ".join(_fmt(SIZE) if v != "_" else "_" for v in values),
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": f"{firing_at}m",
                    "alertname": "SparkiLsmDiskFull",
                    "exp_alerts": [
                        _expected(thresholds, "lsm_disk_full", lv.severity, labels, used)
                        for lv in st.levels
                    ],
                },
                # Past the 5m lookback the expression is empty; keep_firing_for holds it.
                {
                    "eval_time": f"{stop + 6}m",
                    "alertname": "SparkiLsmDiskFull",
                    "exp_alerts": [
                        _expected(thresholds, "lsm_disk_full", lv.severity, labels, used)
                        for lv in st.levels
                    ],
                },
                {
                    "eval_time": f"{stop + 5 + keep + 2}m",
                    "alertname": "SparkiLsmDiskFull",
                    "exp_alerts": [],
                },
            ],
        }
    )
    st = thresholds["lsm_growth_without_compaction"]
    level = st.levels[0]
    per_hour = level.threshold * 4
    vlog = {"target": "edge-cache", "kind": "vlog", **JOB}
    tables = {"target": "edge-cache", **JOB}
    fire_at = 60 + level.hold_minutes + 1
    drop = fire_at + 5  # compaction: the table count falls once
    end = drop + 5
    step = round(per_hour / 60)
    out.append(
        {
            "name": "SparkiLsmGrowingWithoutCompaction: a compaction (the table count falls)"
            " empties its expression at once",
            "interval": "1m",
            "input_series": [
                {
                    "series": _labels_text(BYTES, vlog),
                    "values": " ".join(_fmt(step * m) for m in range(end + 1)),
                },
                {
                    "series": _labels_text(TABLES, tables),
                    "values": " ".join("30" if m < drop else "8" for m in range(end + 1)),
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": f"{fire_at}m",
                    "alertname": "SparkiLsmGrowingWithoutCompaction",
                    "exp_alerts": [
                        _expected(
                            thresholds,
                            "lsm_growth_without_compaction",
                            lv.severity,
                            vlog,
                            step * 60,
                        )
                        for lv in st.levels
                    ],
                },
            ],
            "promql_expr_test": [
                {
                    "expr": GROWTH_NO_COMPACTION.replace(
                        "sparki_lsm_directory_bytes{", 'sparki_lsm_directory_bytes{job="sparki",'
                    ),
                    "eval_time": f"{drop + 1}m",
                    "exp_samples": [],
                }
            ],
        }
    )
    return out
