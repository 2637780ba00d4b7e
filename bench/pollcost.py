"""What the per-adapter poll-cost benchmarks share (etcd, NATS, LSM stores).

Each of them polls one target in-process, back to back, and reports the poll's wall
time, the exporter's CPU time per poll and the time to render the snapshot, against the
same aim (issue 14: a poll under 20 ms per target). The measuring loop and the table
are the same for all of them, so they live here once (each writes its section of
docs/benchmarks.md through docsection.py, as every benchmark does); each benchmark
keeps what is its own: the servers it starts and the words that say what was measured.
"""

from __future__ import annotations

import datetime
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LIMIT_MS = 20.0
TABLE_HEAD = (
    "| {what} | poll p50 | poll p95 | poll max | exporter CPU / poll | render / poll |",
    "|---|---|---|---|---|---|",
)


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile of ``values`` (nearest rank, no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


async def measure(
    target: Any, families: Callable[[Any], Any], rounds: int, warmup: int
) -> dict[str, float]:
    """Poll ``target`` ``warmup + rounds`` times and render each snapshot; closes it.

    Raises when a collector failed in the last poll: a benchmark of a degraded poll
    would measure less work than a healthy one does.
    """
    from exporter.metrics import render_families

    wall: list[float] = []
    cpu: list[float] = []
    render: list[float] = []
    try:
        snap = None
        for i in range(warmup + rounds):
            w0, c0 = time.perf_counter(), time.process_time()
            snap = await target.poll()
            w1, c1 = time.perf_counter(), time.process_time()
            render_families(families(snap))
            w2 = time.perf_counter()
            if i >= warmup:
                wall.append((w1 - w0) * 1000)
                cpu.append((c1 - c0) * 1000)
                render.append((w2 - w1) * 1000)
        failed = [r.name for r in getattr(snap, "runs", ()) if not r.ok]
        if failed:
            raise RuntimeError(f"collectors failed during the benchmark: {failed}")
    finally:
        await target.close()
    return {
        "p50": statistics.median(wall),
        "p95": pct(wall, 0.95),
        "max": max(wall),
        "cpu": statistics.mean(cpu),
        "render": statistics.mean(render),
    }


def table(results: dict[str, dict[str, float]], what: str = "target") -> list[str]:
    """The results as a Markdown table, one row per measured target."""
    lines = [TABLE_HEAD[0].format(what=what), TABLE_HEAD[1]]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['p50']:.2f} ms | {r['p95']:.2f} ms | {r['max']:.2f} ms |"
            f" {r['cpu']:.2f} ms | {r['render']:.2f} ms |"
        )
    return lines


def verdict(results: dict[str, dict[str, float]], rows: Sequence[str] | None = None) -> str:
    """'met (worst p95 X ms)' or 'NOT met (...)' over ``rows`` (default: every row)."""
    worst = max(results[name]["p95"] for name in (rows or list(results)))
    return f"{'met' if worst < LIMIT_MS else 'NOT met'} (worst p95 {worst:.2f} ms)"
