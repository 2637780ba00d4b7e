"""Load and validate rules/thresholds.yaml, the single source of alert thresholds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SEVERITIES = ("warning", "critical")
_DURATION = re.compile(r"^(\d+)(s|m|h)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


class ThresholdsError(ValueError):
    """thresholds.yaml is missing, malformed or disagrees with the signal catalogue."""


def duration_seconds(text: str) -> int:
    """Seconds in a Prometheus duration with one unit (``30s``, ``10m``, ``1h``)."""
    match = _DURATION.match(text)
    if not match:
        raise ThresholdsError(f"{text!r} is not a duration like 30s, 10m or 1h")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Level:
    """One severity of one signal: the rule that fires at ``threshold`` after ``for``."""

    severity: str
    threshold: float
    hold: str  # the ``for`` duration as written, e.g. "10m"

    @property
    def hold_seconds(self) -> int:
        return duration_seconds(self.hold)

    @property
    def hold_minutes(self) -> int:
        return self.hold_seconds // 60


@dataclass(frozen=True, slots=True)
class SignalThresholds:
    key: str
    reason: str
    levels: tuple[Level, ...]  # warning first, then critical; at least one
    min_rate: float | None = None

    def level(self, severity: str) -> Level | None:
        for level in self.levels:
            if level.severity == severity:
                return level
        return None


@dataclass(frozen=True, slots=True)
class Thresholds:
    runbook_url: str
    signals: dict[str, SignalThresholds]

    def __getitem__(self, key: str) -> SignalThresholds:
        return self.signals[key]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ThresholdsError(f"{where}: must be a number")
    return float(value)


def _level(severity: str, data: Any, where: str) -> Level:
    if not isinstance(data, dict) or set(data) != {"threshold", "for"}:
        raise ThresholdsError(f"{where}: needs exactly the keys threshold and for")
    threshold = _number(data["threshold"], f"{where}.threshold")
    hold = data["for"]
    if not isinstance(hold, str):
        raise ThresholdsError(f"{where}.for: must be a duration string such as 10m")
    seconds = duration_seconds(hold)
    if seconds < 60 or seconds % 60:
        raise ThresholdsError(f"{where}.for: must be a whole number of minutes, at least 1m")
    return Level(severity, threshold, hold)


def parse(data: Any) -> Thresholds:
    """Validate the parsed YAML; raise :class:`ThresholdsError` naming the bad key."""
    if not isinstance(data, dict) or set(data) != {"runbook_url", "signals"}:
        raise ThresholdsError("top level must have exactly the keys runbook_url and signals")
    runbook_url = data["runbook_url"]
    if not isinstance(runbook_url, str) or "#" in runbook_url or not runbook_url:
        raise ThresholdsError("runbook_url: must be a path or URL without a #fragment")
    raw = data["signals"]
    if not isinstance(raw, dict) or not raw:
        raise ThresholdsError("signals: must be a non-empty mapping")
    signals: dict[str, SignalThresholds] = {}
    for key, body in raw.items():
        where = f"signals.{key}"
        if not isinstance(body, dict):
            raise ThresholdsError(f"{where}: must be a mapping")
        unknown = set(body) - {"reason", "min_rate", *SEVERITIES}
        if unknown:
            raise ThresholdsError(f"{where}: unknown keys {sorted(unknown)}")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip() or "\n" in reason.strip():
            raise ThresholdsError(f"{where}.reason: must be one line of text")
        levels = tuple(
            _level(sev, body[sev], f"{where}.{sev}") for sev in SEVERITIES if sev in body
        )
        if not levels:
            raise ThresholdsError(f"{where}: needs a warning or a critical level")
        min_rate = body.get("min_rate")
        signals[str(key)] = SignalThresholds(
            key=str(key),
            reason=reason.strip(),
            levels=levels,
            min_rate=None if min_rate is None else _number(min_rate, f"{where}.min_rate"),
        )
    return Thresholds(runbook_url=runbook_url, signals=signals)


def load(path: Path) -> Thresholds:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ThresholdsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ThresholdsError(f"{path}: invalid YAML: {exc}") from None
    return parse(data)
