"""promtool unit tests for every alert, generated from thresholds.yaml.

The tests run the shipped rule files (recording and alerting) on synthetic raw exporter
series, so they exercise the real expressions end to end: a histogram whose p95 is just
above a threshold, counters whose rate ratio is just below one, and so on. For every
severity of every alert there is

- a case just past the threshold, held long enough: it fires with the right labels
  (and, checked at earlier times, not before its ``for`` has elapsed);
- a case just short of the threshold: it stays silent (a critical's near miss still
  fires the warning, and the test says so);
- a breach shorter than ``for``: the alert is seen pending, then clears without firing;
- for ratios, the breach at too little volume (``min_rate``): silent;
- signal-specific traps (maxmemory = 0, no canary traffic at all): silent, and the
  signal has no series at all (no NaN, no +Inf from a division by zero).

"Just past" is 2 % beyond the threshold. Every input is a constant or a step, one
sample a minute; windowed signals (rate over W minutes) are proven with inputs whose
window is either fully normal or fully breached at the times that are checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalog import (
    ADAPTERS,
    CATALOGS,
    SIGNALS,
    WATCHDOG,
    WATCHDOG_DESCRIPTION,
    WATCHDOG_SUMMARY,
    Signal,
    anchor,
    resolve,
)
from .rules import (
    ALERTS_FILE,
    RECORDING_FILE,
    WATCHDOG_SEVERITY,
    alert_groups,
    dump,
    fill,
    recording_groups,
    rule_labels,
)
from .thresholds import Level, SignalThresholds, Thresholds, duration_seconds

MARGIN = 0.02
JOB = {"job": "sparki", "instance": "sparki-exporter:9840"}


class AmbiguousCase(ValueError):
    """A generated case whose outcome depends on sub-minute timing: refuse to emit it."""


# --- Go template helpers, for the expected annotations ----------------------------------


def _g4(value: float) -> str:
    return f"{value:.4g}"


def go_value(value: float) -> str:
    """``{{ $value }}``: Go prints a float64 with %v (shortest representation)."""
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def humanize(value: float) -> str:
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    if abs(value) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix = p
            value /= 1000
        return _g4(value) + prefix
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = p
        value *= 1000
    return _g4(value) + prefix


def humanize_duration(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    if value == 0:
        return _g4(value) + "s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        whole = int(value)
        seconds, minutes = whole % 60, (whole // 60) % 60
        hours, days = (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(value)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = p
        value *= 1000
    return f"{_g4(value)}{prefix}s"


def humanize1024(value: float) -> str:
    if abs(value) <= 1 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix = p
        value /= 1024
    return _g4(value) + prefix


def humanize_percentage(value: float) -> str:
    return _g4(value * 100) + "%"


_FUNCS: dict[str, Callable[[float], str]] = {
    "humanize": humanize,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
    "humanize1024": humanize1024,
}
_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def render_template(text: str, labels: dict[str, str], value: float) -> str:
    """Render the small subset of Go templates the annotations use; refuse anything else."""

    def action(match: re.Match[str]) -> str:
        body = match.group(1)
        if body.startswith("$labels."):
            return labels[body.removeprefix("$labels.")]
        if body == "$value":
            return go_value(value)
        head, _, func = (part.strip() for part in body.partition("|"))
        if head == "$value" and func in _FUNCS:
            return _FUNCS[func](value)
        raise ValueError(f"unsupported template action {{{{ {body} }}}}")

    return _ACTION.sub(action, text)


# --- synthetic inputs --------------------------------------------------------------------

# (signal value, minute, volume scale) -> a gauge's sample, or a counter's increment
# over the minute that ends at ``minute``.
Fn = Callable[[float, int, float], float]


@dataclass(frozen=True)
class Component:
    name: str
    labels: dict[str, str]
    counter: bool
    fn: Fn

    def selector(self) -> str:
        labels = {**self.labels, **JOB}
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return f"{self.name}{{{inner}}}"

    def samples(self, values: Sequence[float], scale: float) -> list[float]:
        if not self.counter:
            return [self.fn(v, m, scale) for m, v in enumerate(values)]
        out, total = [], 0.0
        for m, v in enumerate(values):
            if m:
                total += self.fn(v, m, scale)
            out.append(total)
        return out


@dataclass(frozen=True)
class Synth:
    """How to make raw series whose signal value is v, and the value Prometheus sees."""

    components: tuple[Component, ...]
    labels: dict[str, str]  # the alert's identifying labels (without job, instance)
    realized: Callable[[float], float] = lambda v: v
    volume: float | None = None  # denominator events per second, for min_rate signals
    traps: tuple[tuple[str, tuple[Component, ...]], ...] = field(default=())


def _gauge(name: str, labels: dict[str, str], fn: Fn | None = None) -> Component:
    return Component(name, labels, False, fn or (lambda v, m, s: v))


def _counter(name: str, labels: dict[str, str], fn: Fn) -> Component:
    return Component(name, labels, True, fn)


def _const(value: float) -> Fn:
    return lambda v, m, s: value


class _Histogram:
    """Per-minute bucket increments whose q-quantile interpolates exactly to a value.

    Bounds are half the warning threshold, the two thresholds and twice the critical
    one, so every tested value falls inside a finite bucket (a, b]; 1000 of N
    observations go into that bucket and just enough below it that the rank lands at
    the value: a + (b - a) * (rank - below) / in_bucket.
    """

    N = 100_000
    IN = 1000

    def __init__(self, st: SignalThresholds, q: float = 0.95) -> None:
        ws = [lv.threshold for lv in st.levels]
        self.bounds = sorted({min(ws) / 2, *ws, max(ws) * 2})
        self.q = q

    def _place(self, v: float) -> tuple[int, int, int]:
        for k in range(1, len(self.bounds)):
            if self.bounds[k - 1] < v <= self.bounds[k]:
                r = (v - self.bounds[k - 1]) / (self.bounds[k] - self.bounds[k - 1])
                below = round(self.q * self.N - r * self.IN)
                return k, below, self.N - below - self.IN
        raise AmbiguousCase(f"{v} is outside the synthetic buckets {self.bounds}")

    def realized(self, v: float) -> float:
        k, below, _ = self._place(v)
        a, b = self.bounds[k - 1], self.bounds[k]
        return a + (b - a) * ((self.q * self.N - below) / self.IN)

    def cumulative(self, v: float, le_index: int) -> int:
        """Observations <= bounds[le_index] per minute (le_index == len: +Inf)."""
        k, below, above = self._place(v)
        return (
            (below if le_index >= k - 1 else 0)
            + (self.IN if le_index >= k else 0)
            + (above if le_index >= k + 1 else 0)
        )

    @property
    def volume(self) -> float:
        """Observations per second over all label sets (the latency alerts' min_rate)."""
        return self.N / 60

    def components(self, metric: str, label_sets: Sequence[dict[str, str]]) -> list[Component]:
        """Buckets and _count; the volume scale ``s`` multiplies every count alike, so
        the quantile is the same at any volume."""
        out = []
        les = [*(repr(b) if b != int(b) else str(int(b)) for b in self.bounds), "+Inf"]
        n = len(label_sets)
        for i, labels in enumerate(label_sets):
            for j, le in enumerate(les):

                def fn(v: float, m: int, s: float, j: int = j, i: int = i) -> float:
                    total = self.cumulative(v, j)
                    return float(total // n + (total % n if i == 0 else 0)) * s

                out.append(_counter(f"{metric}_bucket", {**labels, "le": le}, fn))

            def count(v: float, m: int, s: float, i: int = i) -> float:
                return float(self.N // n + (self.N % n if i == 0 else 0)) * s

            out.append(_counter(f"{metric}_count", labels, count))
        return out


def _ratio_counters(
    good: tuple[str, dict[str, str]],
    rest: Sequence[tuple[str, dict[str, str], Callable[[float], float]]],
    per_second: float,
) -> list[Component]:
    """``good`` gets v of the volume per minute; each of ``rest`` its own share."""
    per_minute = per_second * 60

    def good_fn(v: float, m: int, s: float) -> float:
        return round(v * per_minute * s, 6)

    def share_fn(share: Callable[[float], float]) -> Fn:
        return lambda v, m, s: round(share(v) * per_minute * s, 6)

    out = [_counter(good[0], good[1], good_fn)]
    out += [_counter(name, labels, share_fn(share)) for name, labels, share in rest]
    return out


def synth_for(signal: Signal, st: SignalThresholds) -> Synth:
    key = signal.key
    if key == "target_down":
        labels = {"adapter": "postgres", "target": "pg-main"}
        return Synth((_gauge("sparki_up", labels),), labels)
    if key == "poll_stale":
        labels = {"adapter": "redis", "target": "cache"}
        interval = 15.0
        return Synth(
            (
                _gauge("sparki_poll_interval_seconds", labels, _const(interval)),
                _gauge(
                    "sparki_last_poll_success_timestamp_seconds",
                    labels,
                    lambda v, m, s: 60.0 * m - v * interval,
                ),
            ),
            labels,
        )
    if key == "capability_missing":
        labels = {"adapter": "redis", "target": "cache", "capability": "latency_histogram"}
        return Synth((_gauge("sparki_capability", labels),), labels)
    if key == "poll_error_ratio":
        labels = {"adapter": "redis", "target": "cache"}
        interval = 15.0
        return Synth(
            (
                _gauge("sparki_poll_interval_seconds", labels, _const(interval)),
                # Polls every 15 s: 4 a minute, v of them fail, under two reasons.
                _counter(
                    "sparki_poll_errors_total",
                    {**labels, "reason": "timeout"},
                    lambda v, m, s: round(v * 60 / interval * 0.75, 9),
                ),
                _counter(
                    "sparki_poll_errors_total",
                    {**labels, "reason": "connect"},
                    lambda v, m, s: round(v * 60 / interval * 0.25, 9),
                ),
            ),
            labels,
            traps=(
                (
                    "a target down throughout is SparkiTargetDown's alone, silent",
                    (
                        _gauge("sparki_poll_interval_seconds", labels, _const(interval)),
                        _counter(
                            "sparki_poll_errors_total",
                            {**labels, "reason": "connect"},
                            lambda v, m, s: 60 / interval,
                        ),
                        _gauge("sparki_up", labels, _const(0.0)),
                    ),
                ),
            ),
        )
    if key == "exporter_down":
        return Synth((_gauge("up", {}),), {})
    if key == "config_reload_failed":
        return Synth((_gauge("sparki_exporter_config_last_reload_successful", {}),), {})
    if key == "web_config_reload_failed":
        return Synth((_gauge("sparki_exporter_web_config_last_reload_successful", {}),), {})
    catalog = CATALOGS.get(signal.adapter)
    if catalog is not None and hasattr(catalog, "synth"):
        # An adapter's own signals: its catalog's synth(signal, st) builds their input
        # series with this module's helpers (gauge, counter, const, Histogram, Synth).
        synth: Synth = catalog.synth(signal, st)
        return synth
    raise KeyError(f"no test input synthesizer for signal {key}")


# --- cases ------------------------------------------------------------------------------


def beyond(signal: Signal, value: float, level: Level) -> bool:
    if signal.direction == "above":
        return value > level.threshold
    return value < level.threshold


def past(signal: Signal, level: Level) -> float:
    """Just past the threshold: the value a firing case holds."""
    if signal.unit == "bool":
        return 0.0
    factor = 1 + MARGIN if signal.direction == "above" else 1 - MARGIN
    return round(level.threshold * factor, 12)


def short(signal: Signal, level: Level) -> float:
    """Just short of the threshold: the value a silent case holds."""
    if signal.unit == "bool":
        return 1.0
    factor = 1 - MARGIN if signal.direction == "above" else 1 + MARGIN
    return round(level.threshold * factor, 12)


def onset(
    signal: Signal, value: float | None = None, level: Level | None = None
) -> tuple[int, int]:
    """Earliest and latest minute at which a constant input past the threshold is seen.

    A gauge is seen at once, a ratio or quantile over a window from minute 1. An absolute
    rate of a counter that starts at 0 is underestimated until its window is full (at
    minute t < W it reads value * t / W), so it is seen from the first minute past
    W * threshold / value, when both are given, else somewhere up to minute W.
    """
    w = signal.window_minutes
    if not w:
        return 0, 0
    if signal.unit != "per_second" and not signal.counter_rate:
        return 1, w
    if value is None or level is None or value <= 0:
        return 1, w
    first = min(w, max(1, math.floor(w * level.threshold / value) + 1))
    return first, first


def steady_firing(signal: Signal, level: Level, value: float, at: int) -> bool:
    """Whether ``level`` fires at minute ``at`` for an input constant since minute 0."""
    if not beyond(signal, value, level):
        return False
    earliest, latest = onset(signal, value, level)
    if at - latest >= level.hold_minutes:
        return True
    if at - earliest < level.hold_minutes:
        return False
    raise AmbiguousCase(f"{signal.alert}/{level.severity} at {at}m")


@dataclass
class _Case:
    name: str
    values: list[float]
    scale: float = 1.0
    components: tuple[Component, ...] | None = None
    alert_checks: list[tuple[int, list[tuple[Level, float]]]] = field(default_factory=list)
    pending_checks: list[tuple[int, Level]] = field(default_factory=list)
    never_fired: list[tuple[int, Level]] = field(default_factory=list)
    empty: list[tuple[int, str]] = field(default_factory=list)


class SuiteBuilder:
    def __init__(self, thresholds: Thresholds, signal: Signal) -> None:
        self.thresholds = thresholds
        self.signal = signal
        self.st = thresholds[signal.key]
        self.synth = synth_for(signal, self.st)

    def keep_minutes(self) -> int:
        """keep_firing_for of this signal's rules, in minutes (0: none)."""
        if self.signal.adapter == "common":
            return 0
        return duration_seconds(self.thresholds.keep_firing_for) // 60

    # expected alerts ------------------------------------------------------------------

    def _alert(self, level: Level, value: float) -> dict[str, Any]:
        s = self.signal
        labels = {**self.synth.labels, **JOB}
        real = self.synth.realized(value)
        return {
            "exp_labels": {**labels, **rule_labels(s, level)},
            "exp_annotations": {
                "summary": render_template(fill(s.summary, s, level), labels, real),
                "description": render_template(fill(s.description, s, level), labels, real),
                "runbook_url": f"{self.thresholds.runbook_url}#{anchor(s.alert)}",
            },
        }

    def _steady(self, value: float, at: int) -> list[tuple[Level, float]]:
        return [(lv, value) for lv in self.st.levels if steady_firing(self.signal, lv, value, at)]

    # the cases --------------------------------------------------------------------------

    def cases(self) -> list[_Case]:
        s, st = self.signal, self.st
        w = s.window_minutes
        latest = onset(s)[1]
        longest = max(lv.hold_minutes for lv in st.levels)
        out: list[_Case] = []
        for level in st.levels:
            sev, hold = level.severity, level.hold_minutes
            fire, calm = past(s, level), short(s, level)
            # 1. Just past the threshold, held: fires once (and only once) `for` elapsed.
            # Certainly not yet, however early the expression got true.
            early = onset(s, fire, level)[0] + hold - 1
            times = sorted({latest + lv.hold_minutes + 1 for lv in st.levels} | {early})
            case = _Case(f"{s.alert} {sev}: just past {level.threshold} fires", [])
            for at in times:
                try:
                    case.alert_checks.append((at, self._steady(fire, at)))
                except AmbiguousCase:
                    continue
            case.values = [fire] * (max(at for at, _ in case.alert_checks) + 1)
            assert any(lv is level for _, exp in case.alert_checks for lv, _ in exp)
            out.append(case)
            # 2. Just short of it, held: this severity stays silent.
            end = latest + longest + 1
            case = _Case(
                f"{s.alert} {sev}: just short of {level.threshold} is silent", [calm] * (end + 1)
            )
            case.alert_checks.append((end, self._steady(calm, end)))
            out.append(case)
            # 3. A breach shorter than `for`: pending, then cleared, never firing.
            start = w + 1
            length = w if w else max(1, hold - 1)
            at = start + w + hold
            # A level with a shorter `for` may fire during the breach; keep_firing_for
            # then holds it: look once that has run out too.
            keep = self.keep_minutes()
            if keep:
                at = max(at, start + length + w + keep + 1)
            values = [calm] * start + [fire] * length
            values += [calm] * (at + 1 - len(values))
            # The breach keeps the expression true for at most length + w - 1 evaluations.
            if length + w - 2 >= hold:
                raise AmbiguousCase(f"{s.alert}: breach too long for {sev}")
            expected = []
            for lv in st.levels:
                # Levels already past at the calm value stay true throughout (the breach
                # is further past); at `at` the window holds calm values only.
                if beyond(s, calm, lv):
                    if not steady_firing(s, lv, calm, at):
                        raise AmbiguousCase(f"{s.alert}: {lv.severity} in the clearing case")
                    expected.append((lv, calm))
            case = _Case(
                f"{s.alert} {sev}: a {length}m breach clears before for ({level.hold})", values
            )
            case.pending_checks.append((start + length - 1, level))
            case.never_fired.append((at, level))
            case.alert_checks.append((at, expected))
            out.append(case)
            # 4. Ratios: the same breach on too little traffic stays silent.
            if st.min_rate is not None and self.synth.volume:
                end = latest + longest + 1
                scale = st.min_rate / 2 / self.synth.volume
                case = _Case(
                    f"{s.alert} {sev}: past the threshold below min_rate {st.min_rate:g}/s"
                    " is silent",
                    [fire] * (end + 1),
                    scale=scale,
                )
                case.alert_checks.append((end, []))
                out.append(case)
        # 5. Traps specific to the signal.
        for title, comps in self.synth.traps:
            end = latest + longest + 1
            case = _Case(f"{s.alert}: {title}", [0.0] * (end + 1), components=comps)
            case.alert_checks.append((end, []))
            # no NaN or +Inf series either
            case.empty.append((end, resolve(s.value, self.thresholds.exporter_job)))
            out.append(case)
        return out

    def groups(self) -> list[dict[str, Any]]:
        out = []
        for case in self.cases():
            comps = case.components or self.synth.components
            group: dict[str, Any] = {
                "name": case.name,
                "interval": "1m",
                "input_series": [
                    {
                        "series": c.selector(),
                        "values": " ".join(_fmt(x) for x in c.samples(case.values, case.scale)),
                    }
                    for c in comps
                ],
                "alert_rule_test": [
                    {
                        "eval_time": f"{at}m",
                        "alertname": self.signal.alert,
                        "exp_alerts": [self._alert(lv, v) for lv, v in expected],
                    }
                    for at, expected in case.alert_checks
                ],
            }
            exprs = [
                {
                    "expr": (
                        f'ALERTS{{alertname="{self.signal.alert}",alertstate="pending",'
                        f'severity="{lv.severity}"}}'
                    ),
                    "eval_time": f"{at}m",
                    "exp_samples": [
                        {
                            "labels": _labels_text(
                                "ALERTS",
                                {
                                    "alertname": self.signal.alert,
                                    "alertstate": "pending",
                                    **self.synth.labels,
                                    **JOB,
                                    **rule_labels(self.signal, lv),
                                },
                            ),
                            "value": 1,
                        }
                    ],
                }
                for at, lv in case.pending_checks
            ]
            # ALERTS is written at every evaluation: no firing sample in the whole run
            # proves the alert never fired, not merely that it is not firing now.
            exprs += [
                {
                    "expr": (
                        f'count_over_time(ALERTS{{alertname="{self.signal.alert}",'
                        f'alertstate="firing",severity="{lv.severity}"}}[{at}m])'
                    ),
                    "eval_time": f"{at}m",
                    "exp_samples": [],
                }
                for at, lv in case.never_fired
            ]
            exprs += [
                {"expr": expr, "eval_time": f"{at}m", "exp_samples": []} for at, expr in case.empty
            ]
            if exprs:
                group["promql_expr_test"] = exprs
            out.append(group)
        return out


# --- hand-written scenarios ------------------------------------------------------------


def _expected(
    thresholds: Thresholds, key: str, severity: str, labels: dict[str, str], value: float
) -> dict[str, Any]:
    """The alert a rule of ``key`` at ``severity`` fires for series with ``labels``."""
    signal = next(s for s in SIGNALS if s.key == key)
    level = thresholds[key].level(severity)
    assert level is not None
    return {
        "exp_labels": {**labels, **rule_labels(signal, level)},
        "exp_annotations": {
            "summary": render_template(fill(signal.summary, signal, level), labels, value),
            "description": render_template(fill(signal.description, signal, level), labels, value),
            "runbook_url": f"{thresholds.runbook_url}#{anchor(signal.alert)}",
        },
    }


def _series(comps: Sequence[Component], values: Sequence[float]) -> list[dict[str, str]]:
    return [
        {"series": c.selector(), "values": " ".join(_fmt(x) for x in c.samples(values, 1.0))}
        for c in comps
    ]


def _never(alert: str, state: str, severity: str, at: int, window: int) -> dict[str, Any]:
    return {
        "expr": (
            f'count_over_time(ALERTS{{alertname="{alert}",alertstate="{state}",'
            f'severity="{severity}"}}[{window}m])'
        ),
        "eval_time": f"{at}m",
        "exp_samples": [],
    }


def scenarios(thresholds: Thresholds, adapter: str) -> list[dict[str, Any]]:
    """Incidents the generated per-threshold cases cannot express: the heartbeat, the
    exporter gone (absent), data vanishing while an alert fires, a failover renaming a
    series, and alerts of equal target names on different adapters kept apart."""
    job = thresholds.exporter_job
    out: list[dict[str, Any]] = []
    if adapter == "common":
        out.append(
            {
                "name": f"{WATCHDOG} always fires",
                "interval": "1m",
                "input_series": [],
                "alert_rule_test": [
                    {
                        "eval_time": f"{at}m",
                        "alertname": WATCHDOG,
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": WATCHDOG_SEVERITY},
                                "exp_annotations": {
                                    "summary": WATCHDOG_SUMMARY,
                                    "description": WATCHDOG_DESCRIPTION,
                                    "runbook_url": f"{thresholds.runbook_url}#" + anchor(WATCHDOG),
                                },
                            }
                        ],
                    }
                    for at in (0, 30)
                ],
            }
        )
        down = thresholds["exporter_down"].levels[0]
        out.append(
            {
                "name": "SparkiExporterDown: a job without any scrape target fires (absent)",
                "interval": "1m",
                "input_series": [],
                "alert_rule_test": [
                    {
                        "eval_time": f"{down.hold_minutes + 1}m",
                        "alertname": "SparkiExporterDown",
                        "exp_alerts": [
                            _expected(thresholds, "exporter_down", down.severity, {"job": job}, 0)
                        ],
                    }
                ],
            }
        )
        # Up for 3 minutes, then the target vanishes (removed from discovery): once its
        # last sample is out of the 5m lookback, absent() takes over.
        gone = 3 + 5 + 1 + down.hold_minutes + 1
        out.append(
            {
                "name": "SparkiExporterDown: the exporter's scrape target disappears",
                "interval": "1m",
                "input_series": [
                    {"series": f'up{{job="{job}",instance="x:9840"}}', "values": "1x3"}
                ],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "SparkiExporterDown", "exp_alerts": []},
                    {
                        "eval_time": f"{gone}m",
                        "alertname": "SparkiExporterDown",
                        "exp_alerts": [
                            _expected(thresholds, "exporter_down", down.severity, {"job": job}, 0)
                        ],
                    },
                ],
            }
        )
        warn = thresholds["target_down"].levels[0]
        pg = {"adapter": "postgres", "target": "main", **JOB}
        out.append(
            {
                "name": "SparkiTargetDown: equal target names of two adapters stay apart",
                "interval": "1m",
                "input_series": [
                    {"series": _labels_text("sparki_up", pg), "values": "0x10"},
                    {
                        "series": _labels_text("sparki_up", {**pg, "adapter": "redis"}),
                        "values": "1x10",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": f"{warn.hold_minutes + 1}m",
                        "alertname": "SparkiTargetDown",
                        "exp_alerts": [_expected(thresholds, "target_down", "warning", pg, 0)],
                    }
                ],
            }
        )
    return out


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _labels_text(name: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def test_file(path: str) -> str:
    return f"tests/promtool/{path}"


def render(thresholds: Thresholds) -> dict[str, str]:
    """One promtool test file per adapter, by path relative to the repository root."""
    files: dict[str, str] = {}
    for adapter in ADAPTERS:
        groups = []
        for signal in SIGNALS:
            if signal.adapter == adapter:
                groups += SuiteBuilder(thresholds, signal).groups()
        groups += scenarios(thresholds, adapter)
        catalog = CATALOGS.get(adapter)
        if catalog is not None and hasattr(catalog, "scenarios"):
            # Incidents particular to the adapter, written in its catalog.
            groups += catalog.scenarios(thresholds)
        doc = {
            "rule_files": [f"../../{RECORDING_FILE}", f"../../{ALERTS_FILE}"],
            "evaluation_interval": "1m",
            # Recordings before the alerts that read them, at every step; without an
            # order promtool evaluates groups in random order, and alerts would see
            # the previous minute's recording only some of the time.
            "group_eval_order": [g["name"] for g in recording_groups()]
            + [g["name"] for g in alert_groups(thresholds)],
            "tests": groups,
        }
        header = (
            "# Generated by `sparki-exporter generate` from rules/thresholds.yaml: promtool\n"
            "# unit tests of every alert (run: promtool test rules tests/promtool/*.yml).\n"
            "# Do not edit; see exporter/generate/promtests.py for what each case proves.\n"
        )
        files[test_file(f"sparki-{adapter}.test.yml")] = header + dump(doc)
    return files
