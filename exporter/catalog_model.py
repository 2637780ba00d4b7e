"""The vocabulary of the catalogs: recordings, alerting signals, quantile helpers.

Every adapter's catalog (``exporter.adapters.<name>.catalog``) and the generator's
common catalog build on these types. This module imports nothing of the exporter's
runtime or the generator, so an adapter's catalog can be read on its own, without its
driver and without an import cycle through exporter.generate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["above", "below"]
Unit = Literal["seconds", "ratio", "per_second", "intervals", "bool", "bytes", "count"]
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))

# Placeholder for the exporter's scrape job, filled from thresholds.yaml's exporter_job.
EXPORTER_JOB = "{exporter_job}"


@dataclass(frozen=True, slots=True)
class Recording:
    adapter: str
    record: str
    expr: str


def quantiles(adapter: str, level: str, metric: str, window: str, without: str) -> list[Recording]:
    rate = f"rate({metric}_bucket[{window}])"
    inner = f"sum without ({without}) ({rate})" if without else rate
    return [
        Recording(
            adapter, f"{level}:{metric}:{name}_rate{window}", f"histogram_quantile({q}, {inner})"
        )
        for name, q in QUANTILES
    ]


@dataclass(frozen=True, slots=True)
class Signal:
    """One alerting signal. Texts may use ``[value]``, ``[threshold]`` and ``[for]``."""

    key: str  # its key in thresholds.yaml
    adapter: str
    alert: str
    title: str
    value: str  # PromQL whose result is compared with the threshold
    direction: Direction
    unit: Unit
    window_minutes: int  # the rate() window behind the value; 0 for plain gauges
    labels: tuple[str, ...]  # the labels that tell one alert instance from another
    summary: str
    description: str
    guard: str | None = None  # PromQL of the volume a ratio or percentile is computed from
    guard_match: str = ""  # vector matching from the value to the guard
    # A user-facing symptom (latency, errors, saturation, down, replication stopped) may
    # page; a cause (hit ratios, evictions) only notifies chat: the generator refuses a
    # critical level for it.
    symptom: bool = True
    # The value is proportional to one counter's rate (not a ratio of two), so it ramps
    # up while the rate window fills, as a per_second signal does (promtests' onset).
    counter_rate: bool = False

    @property
    def op(self) -> str:
        return ">" if self.direction == "above" else "<"
