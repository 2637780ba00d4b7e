"""The canary: put, get and delete of the exporter's own key, each timed.

An etcd that answers slowly is a Kubernetes control plane in trouble (the API server
writes every object through it), so latency of a real write, read and delete is the
symptom to watch. The key lives under ``canary_prefix`` and is deleted in the same
poll: nothing is left behind, even when the get fails.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from ...adapter import Reason
from ...bucket_edges import require_edges
from ...metrics import (
    CounterMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from .client import GatewayError, b64, is_connection_error, unb64
from .context import Context

OPERATIONS = ("put", "get", "delete")
REASONS = ("nospace", "auth", "permission", "mismatch", "other")
# Edges include the alert thresholds of etcd_canary_latency (rules/thresholds.yaml).
BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
require_edges(BUCKETS, "etcd_canary_latency")  # a changed threshold must move the buckets too


@dataclass(frozen=True, slots=True)
class CanaryPart:
    histograms: tuple[tuple[str, HistogramSnapshot], ...]
    errors: tuple[tuple[str, str, int], ...]  # (operation, reason, count)


class CanaryState:
    def __init__(self) -> None:
        self.histograms = {op: HistogramState(BUCKETS) for op in OPERATIONS}
        self.errors: dict[tuple[str, str], int] = {}

    def part(self) -> CanaryPart:
        return CanaryPart(
            tuple((op, h.snapshot()) for op, h in self.histograms.items()),
            tuple((op, reason, n) for (op, reason), n in sorted(self.errors.items())),
        )


def _reason(exc: GatewayError) -> str:
    text = exc.message.lower()
    if "space exceeded" in text:
        return "nospace"
    reason = exc.reason().value
    return reason if reason in REASONS else "other"


def key_for(ctx: Context) -> str:
    """The exporter's own key: prefix, target name and process id (two exporters differ)."""
    return f"{ctx.config.canary_prefix}{ctx.config.name}/{os.getpid()}"


async def collect(ctx: Context) -> CanaryPart:
    state: CanaryState = ctx.state.setdefault("canary", CanaryState())
    key = b64(key_for(ctx))
    value = str(time.time_ns())
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("put", "/v3/kv/put", {"key": key, "value": b64(value)}),
        ("get", "/v3/kv/range", {"key": key}),
        ("delete", "/v3/kv/deleterange", {"key": key}),
    ]
    put_done = False
    try:
        for op, path, body in steps:
            start = time.perf_counter()
            try:
                reply = await ctx.call_any(path, body)
            except GatewayError as exc:
                errors = state.errors
                errors[(op, _reason(exc))] = errors.get((op, _reason(exc)), 0) + 1
                if exc.reason() in (Reason.AUTH, Reason.PERMISSION):
                    # AUTH is fatal (every call would be refused the same way); a user
                    # without rights on canary_prefix degrades this collector alone.
                    raise
                # Refused (over quota, say): counted, and the histograms stay exported.
                break
            state.histograms[op].observe(time.perf_counter() - start)
            if op == "put":
                put_done = True
            elif op == "get":
                kvs = reply.get("kvs") or []
                if not kvs or unb64(kvs[0].get("value", "")).decode() != value:
                    state.errors[(op, "mismatch")] = state.errors.get((op, "mismatch"), 0) + 1
            else:
                put_done = False
    finally:
        if put_done:  # a step after the put failed: do not leave the key behind
            try:
                await ctx.call_any("/v3/kv/deleterange", {"key": key})
            except Exception as exc:
                if not (isinstance(exc, GatewayError) or is_connection_error(exc)):
                    raise
    return state.part()


def families(target: str, part: CanaryPart) -> list[Metric]:
    hist = histogram_family(
        "sparki_etcd_canary_duration_seconds",
        "Time of the exporter's canary put, get and delete of its own key",
        ["target", "operation"],
        (([target, op], snap) for op, snap in part.histograms),
    )
    errors = CounterMetricFamily(
        "sparki_etcd_canary_errors",
        "Canary operations etcd refused (nospace: over its quota) or answered wrongly",
        labels=["target", "operation", "reason"],
    )
    for op, reason, count in part.errors:
        errors.add_metric([target, op, reason], count)
    return [hist, errors]
