"""Metric building blocks shared by adapters, and the exposition renderer.

Adapters build client_python metric families from snapshots (the custom-collector
pattern). The core renders those families to bytes once, when a snapshot is made, and
/metrics only concatenates pre-rendered bytes. client_python's generic
``generate_latest`` formats every sample on every scrape (~110 ms for 15k series on
this hardware); rendering here is a tight loop run once per poll instead.

Bodies are shared between the Prometheus text format and OpenMetrics: for the metric
types we emit (gauge, counter, histogram) the two differ only in the header lines (the
counter's family name, the UNIT line, and HELP escaping: OpenMetrics escapes ``"``, the
text format must not).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = [
    "CounterMetricFamily",
    "GaugeMetricFamily",
    "HistogramMetricFamily",
    "HistogramSnapshot",
    "HistogramState",
    "Metric",
    "RenderedFamily",
    "format_value",
    "mark_static",
    "render_families",
]


_INT_LIMIT = 10**15


def format_value(value: float) -> str:
    """Format a sample value the way Go's Prometheus libraries do."""
    if value.__class__ is int and -_INT_LIMIT < value < _INT_LIMIT:  # the common case, fast
        return str(value)
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    if "\\" not in value and "\n" not in value and '"' not in value:  # the common case, fast
        return value
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(value: str) -> str:
    """HELP text for the Prometheus text format: only backslash and newline are escaped.

    Prometheus' parser refuses any other escape sequence there, so ``"`` stays as is.
    """
    return value.replace("\\", r"\\").replace("\n", r"\n")


def _escape_help_om(value: str) -> str:
    """HELP text for OpenMetrics, whose escaped-string also escapes ``"``."""
    return _escape_help(value).replace('"', r"\"")


@dataclass(frozen=True, slots=True)
class RenderedFamily:
    """One metric family rendered to bytes: headers per format and a shared body."""

    name: str
    text_header: bytes
    om_header: bytes
    body: bytes


_STATIC = "_sparki_static_rendering"


def mark_static(family: Metric) -> Metric:
    """Mark a family its adapter will hand out again unchanged (a cache of its own):
    it is rendered once, and the bytes reused. It must not be changed afterwards."""
    setattr(family, _STATIC, None)
    return family


def render_family(family: Metric) -> RenderedFamily:
    """Render one family. Label values are escaped; sample order is kept."""
    static = hasattr(family, _STATIC)
    if static and (done := getattr(family, _STATIC)) is not None:
        return done  # type: ignore[no-any-return]
    help_text = _escape_help(family.documentation)
    text_name = family.name + "_total" if family.type == "counter" else family.name
    text_header = f"# HELP {text_name} {help_text}\n# TYPE {text_name} {family.type}\n"
    om_help = _escape_help_om(family.documentation)
    om_header = f"# HELP {family.name} {om_help}\n# TYPE {family.name} {family.type}\n"
    if family.unit:
        om_header += f"# UNIT {family.name} {family.unit}\n"
    # Run once per poll over every sample (tens of thousands): kept to plain loops and
    # local names, which is what makes it fast in CPython.
    lines: list[str] = []
    append = lines.append
    escape = _escape_label
    fmt = format_value
    for sample in family.samples:
        if sample.labels:
            labels = ",".join([f'{k}="{escape(str(v))}"' for k, v in sample.labels.items()])
            append(f"{sample.name}{{{labels}}} {fmt(sample.value)}\n")
        else:
            append(f"{sample.name} {fmt(sample.value)}\n")
    rendered = RenderedFamily(
        family.name, text_header.encode(), om_header.encode(), "".join(lines).encode()
    )
    if static:
        setattr(family, _STATIC, rendered)
    return rendered


def render_families(families: Iterable[Metric]) -> tuple[RenderedFamily, ...]:
    """Render families, merging any that share a name (their samples are concatenated)."""
    merged: dict[str, RenderedFamily] = {}
    for family in families:
        rendered = render_family(family)
        if rendered.name in merged:
            prev = merged[rendered.name]
            rendered = RenderedFamily(
                prev.name, prev.text_header, prev.om_header, prev.body + rendered.body
            )
        merged[rendered.name] = rendered
    return tuple(merged.values())


def merge_exposition(
    blocks: Sequence[Sequence[RenderedFamily]], openmetrics: bool, eof: bool = True
) -> bytes:
    """Join rendered blocks so each family appears once, with all of its samples together.

    Both formats require a family's samples to be contiguous and its HELP/TYPE to
    appear once; targets of the same adapter share family names, so bodies are
    grouped by name in first-seen order.
    """
    order: list[str] = []
    headers: dict[str, bytes] = {}
    bodies: dict[str, list[bytes]] = {}
    for block in blocks:
        for fam in block:
            if fam.name not in headers:
                order.append(fam.name)
                headers[fam.name] = fam.om_header if openmetrics else fam.text_header
                bodies[fam.name] = []
            bodies[fam.name].append(fam.body)
    parts: list[bytes] = []
    for name in order:
        parts.append(headers[name])
        parts.extend(bodies[name])
    if openmetrics and eof:
        parts.append(b"# EOF\n")
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Immutable cumulative histogram: per-bucket counts (not yet cumulated), sum, count."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs including +Inf, as HistogramMetricFamily wants."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((format_value(bound), running))
        running += self.counts[-1]
        out.append(("+Inf", running))
        return out


class HistogramState:
    """A histogram accumulated by the exporter across polls.

    ``counts`` has one slot per finite bound plus one for +Inf. Only non-negative,
    finite observations are accepted: a derived observation that is not (after a
    statistics reset, say) is a bug upstream and is dropped rather than exported.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("histogram bounds must be strictly increasing")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, count: int = 1, total: float | None = None) -> bool:
        """Add ``count`` observations of ``value``; ``total`` overrides their summed value."""
        if count <= 0 or not math.isfinite(value) or value < 0:
            return False
        index = bisect.bisect_left(self.bounds, value)
        self.counts[index] += count
        self.sum += value * count if total is None else total
        return True

    def add_counts(self, counts: Sequence[int], total: float) -> bool:
        """Add observations already spread over the buckets (one count per slot).

        For estimators that know how many observations fall in each bucket but not
        their values; ``total`` is their exact sum. Refused, like ``observe``, when a
        count is negative or the total is not a finite non-negative number.
        """
        if (
            len(counts) != len(self.counts)
            or any(c < 0 for c in counts)
            or not sum(counts)
            or not math.isfinite(total)
            or total < 0
        ):
            return False
        for i, c in enumerate(counts):
            self.counts[i] += c
        self.sum += total
        return True

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.sum)


def histogram_family(
    name: str,
    doc: str,
    label_names: Sequence[str],
    series: Iterable[tuple[Sequence[str], HistogramSnapshot]],
    unit: str = "",
) -> HistogramMetricFamily:
    """A histogram family from (label values, snapshot) pairs."""
    family = HistogramMetricFamily(name, doc, labels=list(label_names), unit=unit)
    for labels, hist in series:
        family.add_metric(list(labels), hist.buckets(), hist.sum)
    return family
