"""What Sparki records and alerts on: expressions, names and texts, without numbers.

The numbers (thresholds, ``for`` durations, severities) come from rules/thresholds.yaml;
this module says which PromQL each signal is, how it is named and described, and in
which direction it is bad. Every generated artifact (rule files, the PrometheusRule,
dashboards, promtool tests) is built from these two together.

Naming follows Prometheus' ``level:metric:operations`` convention: ``level`` lists the
labels the result is kept by (besides the scrape's job and instance, which every
aggregation here preserves by aggregating ``without`` the dropped labels), ``metric``
is the source metric without ``_total``, and ``operations`` is what was applied, newest
first (``p95_rate5m``: the 95th percentile of a 5 minute rate).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .. import adapters
from ..adapters.postgres.catalog import PG_CONN_UTIL, PG_LATENCY  # the overview's headline
from ..catalog_model import (
    EXPORTER_JOB,
    QUANTILES,
    Direction,
    Recording,
    Signal,
    Unit,
    quantiles,
)

__all__ = [
    "EXPORTER_JOB",
    "PG_CONN_UTIL",
    "PG_LATENCY",
    "QUANTILES",
    "Direction",
    "Recording",
    "Signal",
    "Unit",
    "quantiles",
]


# The exact SDK the committed dashboards were generated with: another build may emit
# different JSON, and `generate --check` would then fail for no change of ours.
SDK_REQUIREMENT = "grafana-foundation-sdk==1769699379!11.6.0"


def adapter_catalog(name: str) -> ModuleType:
    """An adapter package's catalog module (driver-free by contract)."""
    return importlib.import_module(f"exporter.adapters.{name}.catalog")


CATALOGS = {name: adapter_catalog(name) for name in adapters.names()}
ADAPTERS = ("common", *CATALOGS)
ADAPTER_TITLES = {"common": "Exporter", **{n: c.TITLE for n, c in CATALOGS.items()}}


# --- recording rules --------------------------------------------------------------------

EXPORTER_UP = f'(up{{job="{EXPORTER_JOB}"}} or absent(up{{job="{EXPORTER_JOB}"}}) * 0)'


# --- alerting signals -------------------------------------------------------------------


# The exporter's own signals; every adapter's are in its package's catalog.
COMMON_SIGNALS: tuple[Signal, ...] = (
    Signal(
        key="target_down",
        adapter="common",
        alert="SparkiTargetDown",
        title="Target down",
        value="sparki_up",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("adapter", "target"),
        summary="Sparki cannot poll {{ $labels.adapter }} target {{ $labels.target }}",
        description=(
            "sparki_up is [value] for {{ $labels.adapter }} target {{ $labels.target }}:"
            " every poll for at least [for] failed. sparki_last_poll_error_reason says why"
            " (timeout, connect, auth, permission, protocol)."
        ),
    ),
    Signal(
        key="poll_stale",
        adapter="common",
        alert="SparkiPollsStale",
        title="Last successful poll age",
        value=(
            "(time() - sparki_last_poll_success_timestamp_seconds)"
            " / (sparki_poll_interval_seconds > 0)"
        ),
        direction="above",
        unit="intervals",
        window_minutes=0,
        labels=("adapter", "target"),
        summary="Data of {{ $labels.adapter }} target {{ $labels.target }} is stale",
        description=(
            "The last successful poll of {{ $labels.adapter }} target {{ $labels.target }}"
            " was [value] poll intervals ago (threshold [threshold] for [for]); its dashboards"
            " and alerts show old data."
        ),
    ),
    Signal(
        key="capability_missing",
        adapter="common",
        alert="SparkiCapabilityMissing",
        title="Optional data source unusable",
        value="sparki_capability",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("adapter", "target", "capability"),
        summary=(
            "{{ $labels.capability }} is unusable on {{ $labels.adapter }} target"
            " {{ $labels.target }}"
        ),
        description=(
            "sparki_capability is [value] for {{ $labels.capability }} on"
            " {{ $labels.adapter }} target {{ $labels.target }} for [for]: the metrics it"
            " feeds are missing and the alerts built on them cannot fire. The exporter's"
            " log says why and how to fix it."
        ),
    ),
    Signal(
        key="poll_error_ratio",
        adapter="common",
        alert="SparkiPollErrorRatioHigh",
        title="Failed polls / polls",
        # A target down throughout the window is SparkiTargetDown's business: without
        # the `unless`, a long outage would leave this alert past its `for` and it would
        # page once the target is back, while the window still holds the outage.
        value=(
            "((sum without (reason) (rate(sparki_poll_errors_total[5m]))"
            " * on (job, instance, adapter, target) sparki_poll_interval_seconds)"
            " unless on (job, instance, adapter, target) (max_over_time(sparki_up[5m]) == 0))"
        ),
        direction="above",
        unit="ratio",
        window_minutes=5,
        labels=("adapter", "target"),
        summary="Polls of {{ $labels.adapter }} target {{ $labels.target }} fail intermittently",
        description=(
            "[value] of the polls of {{ $labels.adapter }} target {{ $labels.target }}"
            " failed over 5 minutes (threshold [threshold] for [for]). A target that fails"
            " every other poll never stays down long enough for SparkiTargetDown, yet its"
            " clients see the same errors. sparki_poll_errors_total's reason says why."
        ),
        counter_rate=True,
    ),
    Signal(
        key="exporter_down",
        adapter="common",
        alert="SparkiExporterDown",
        title="Exporter scraped (Prometheus up)",
        value=EXPORTER_UP,
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("job", "instance"),
        summary="Prometheus cannot scrape the Sparki exporter (job {{ $labels.job }})",
        description=(
            "up of the exporter's job {{ $labels.job }} is [value] for [for] (or the job has"
            " no scrape target at all): every Sparki alert is blind until it is back."
        ),
    ),
    Signal(
        key="config_reload_failed",
        adapter="common",
        alert="SparkiConfigReloadFailed",
        title="Last configuration reload succeeded",
        value="sparki_exporter_config_last_reload_successful",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("job", "instance"),
        summary=(
            "Sparki exporter {{ $labels.instance }} (job {{ $labels.job }}) rejected its new"
            " configuration"
        ),
        description=(
            "The last configuration reload of {{ $labels.instance }} (job {{ $labels.job }})"
            " failed (sparki_exporter_config_last_reload_successful is [value] for [for]);"
            " the exporter still runs the previous configuration: the change you made is"
            " not in effect. Its log names the file, line and field."
        ),
        symptom=False,
    ),
    Signal(
        key="web_config_reload_failed",
        adapter="common",
        alert="SparkiWebConfigReloadFailed",
        title="Last web config reload succeeded",
        value="sparki_exporter_web_config_last_reload_successful",
        direction="below",
        unit="bool",
        window_minutes=0,
        labels=("job", "instance"),
        summary=(
            "Sparki exporter {{ $labels.instance }} (job {{ $labels.job }}) rejected its new"
            " web config or TLS certificate"
        ),
        description=(
            "The last reload of the web config (--web.config.file) of {{ $labels.instance }}"
            " (job {{ $labels.job }}) failed (sparki_exporter_web_config_last_reload_successful"
            " is [value] for [for]); the previous web config and certificate are still"
            " served: a renewed certificate is not in use and the old one may expire."
            " Its log names the file and the problem."
        ),
        symptom=False,
    ),
)

# Grouped by adapter in ADAPTERS order (the exporter's own first), so the generated
# files keep one adapter's signals together.
RECORDINGS: tuple[Recording, ...] = tuple(
    r for a in ADAPTERS for r in (CATALOGS[a].RECORDINGS if a in CATALOGS else ())
)
SIGNALS: tuple[Signal, ...] = tuple(
    s
    for a in ADAPTERS
    for s in (CATALOGS[a].SIGNALS if a in CATALOGS else COMMON_SIGNALS)
    if s.adapter == a
)
SIGNALS_BY_KEY = {s.key: s for s in SIGNALS}

# Signals that compare a histogram's percentile with their thresholds: those thresholds
# must be bucket edges of the histogram (exporter/alert_edges.py, generated).
_HISTOGRAM_SIGNALS = {k: m for c in CATALOGS.values() for k, m in c.HISTOGRAM_SIGNALS.items()}
HISTOGRAM_SIGNALS = {
    s.key: _HISTOGRAM_SIGNALS[s.key] for s in SIGNALS if s.key in _HISTOGRAM_SIGNALS
}


def resolve(expr: str, exporter_job: str) -> str:
    """An expression with the exporter's scrape job (thresholds.yaml) filled in."""
    return expr.replace(EXPORTER_JOB, exporter_job)


# Always firing: the dead man's switch. Alertmanager routes it to a heartbeat receiver
# (an external service that pages when the heartbeats stop), proving that Prometheus
# evaluates the rules and Alertmanager delivers.
WATCHDOG = "SparkiWatchdog"
WATCHDOG_SUMMARY = "Sparki alerting pipeline heartbeat (always firing)"
WATCHDOG_DESCRIPTION = (
    "This alert always fires. It reaches the heartbeat receiver every repeat interval;"
    " when the heartbeats stop, Prometheus, its rules or Alertmanager are broken and no"
    " other Sparki alert can reach anyone."
)


def value_template(unit: Unit) -> str:
    """How ``$value`` is shown in a description."""
    return {
        "seconds": "{{ $value | humanizeDuration }}",
        "ratio": "{{ $value | humanizePercentage }}",
        "per_second": "{{ $value | humanize }}/s",
        "intervals": "{{ $value | humanize }}",
        "bool": "{{ $value }}",
        "bytes": "{{ $value | humanize1024 }}B",
        "count": "{{ $value }}",
    }[unit]


def number(value: float) -> str:
    """A threshold as PromQL and YAML want it: no trailing .0, no exponent for usual values."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def human_threshold(unit: Unit, value: float) -> str:
    if unit == "seconds":
        if value < 1:
            return f"{number(round(value * 1000, 9))}ms"
        if value >= 60 and value % 60 == 0:
            return f"{number(value / 60)}m"
        return f"{number(value)}s"
    if unit == "ratio":
        return f"{number(round(value * 100, 9))}%"
    if unit == "per_second":
        return f"{number(value)}/s"
    if unit == "intervals":
        return f"{number(value)} intervals"
    if unit == "bytes":
        for size, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if value >= size:
                return f"{number(round(value / size, 9))}{name}"
        return f"{number(value)}B"
    return number(value)


def anchor(alert: str) -> str:
    """The docs/runbooks.md anchor of an alert (GitHub's slug of a ``## Alert`` heading)."""
    return alert.lower()
