"""Load and validate rules/thresholds.yaml, the single source of alert thresholds."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    # How long an alert keeps firing after its expression stops returning it (its data
    # vanished, or the condition cleared): covers a target outage until the target-down
    # critical pages. "0m" turns it off.
    keep_firing_for: str = "10m"
    # The Prometheus job that scrapes the exporter: the exporter-down alert reads its
    # ``up`` and guards its absence.
    exporter_job: str = "sparki"
    # Labels (besides job and instance) that tell one environment from another, such as
    # an external ``cluster`` label: routing groups and inhibits only within one value.
    cluster_labels: tuple[str, ...] = field(default=("cluster",))

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


TOP_LEVEL = ("runbook_url", "keep_firing_for", "exporter_job", "cluster_labels", "signals")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def check_runbook_url(url: Any) -> str:
    """An absolute http(s) URL without a fragment: a pager or chat message has no
    repository to resolve a relative path against, so a relative link is dead there."""
    if not isinstance(url, str) or not url:
        raise ThresholdsError("runbook_url: must be an absolute http(s) URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ThresholdsError(
            f"runbook_url: {url!r} is not an absolute http(s) URL; alert receivers (pager,"
            " chat) cannot follow a relative link"
        )
    if parts.fragment or "#" in url:
        raise ThresholdsError("runbook_url: no #fragment; each alert appends its own anchor")
    return url


def parse(data: Any) -> Thresholds:
    """Validate the parsed YAML; raise :class:`ThresholdsError` naming the bad key."""
    if not isinstance(data, dict) or not {"runbook_url", "signals"} <= set(data):
        raise ThresholdsError("top level needs the keys runbook_url and signals")
    unknown_top = set(data) - set(TOP_LEVEL)
    if unknown_top:
        raise ThresholdsError(f"unknown top-level keys {sorted(unknown_top)}")
    runbook_url = check_runbook_url(data["runbook_url"])
    keep = data.get("keep_firing_for", "10m")
    if not isinstance(keep, str):
        raise ThresholdsError("keep_firing_for: must be a duration string such as 10m")
    duration_seconds(keep)
    job = data.get("exporter_job", "sparki")
    if not isinstance(job, str) or not job or '"' in job or "\\" in job:
        raise ThresholdsError("exporter_job: must be the job name of the exporter's scrape")
    cluster = data.get("cluster_labels", ["cluster"])
    if not isinstance(cluster, list) or not all(
        isinstance(x, str) and _LABEL.match(x) for x in cluster
    ):
        raise ThresholdsError("cluster_labels: must be a list of label names")
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
    return Thresholds(
        runbook_url=runbook_url,
        signals=signals,
        keep_firing_for=keep,
        exporter_job=job,
        cluster_labels=tuple(cluster),
    )


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
