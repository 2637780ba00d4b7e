"""Refuse histogram bucket layouts that would make the latency alerts approximate.

The alert thresholds (rules/thresholds.yaml) reach the exporter through the generated
exporter/alert_edges.py, so nothing here reads YAML at run time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .alert_edges import LATENCY_EDGES


def missing_edges(bounds: Sequence[float], signal: str) -> list[float]:
    """The thresholds of ``signal`` that are not among ``bounds``."""
    _, edges = LATENCY_EDGES[signal]
    return [e for e in edges if not any(math.isclose(e, b, rel_tol=1e-9) for b in bounds)]


def require_edges(bounds: Sequence[float], signal: str) -> None:
    """Raise ValueError when ``bounds`` lacks a threshold of ``signal`` (the config
    validation prefixes the message with the field's path, e.g.
    ``postgres.0.statement_buckets``).

    Without the edge, histogram_quantile interpolates across the threshold and the
    alert fires early or late by up to a bucket's width, with every test still green.
    """
    missing = missing_edges(bounds, signal)
    if missing:
        metric, edges = LATENCY_EDGES[signal]
        shown = ", ".join(f"{e:g}" for e in edges)
        raise ValueError(
            f"must include {shown} (the alert thresholds of {signal} in"
            f" rules/thresholds.yaml, compared with {metric}) as bucket edges; missing"
            f" {', '.join(f'{m:g}' for m in missing)}"
        )
