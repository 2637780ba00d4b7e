"""Poll cost of the etcd adapter against real etcd members on this machine.

Issue 14 asks for a poll cost under 20 ms per target. This starts throwaway etcd
members (Debian's etcd-server: one single member and one three-member cluster), polls
each with the adapter in-process (every default collector on: canary, status, alarms)
and reports the poll's wall time, the exporter's CPU time per poll and the time to
render the snapshot's families. The members run on the same machine, so wall time
includes their work (an fsync per canary put and delete).

Results go to stdout and, unless ``--no-write``, to the ``## etcd`` section of
docs/benchmarks.md (other sections are left alone).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_etcd import EtcdCluster, EtcdMember  # noqa: E402

from exporter.adapters.etcd.config import EtcdConfig  # noqa: E402
from exporter.adapters.etcd.target import EtcdTarget, families  # noqa: E402
from exporter.config import GlobalConfig  # noqa: E402
from exporter.metrics import render_families  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## etcd"
LIMIT_MS = 20.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(target_config: dict[str, Any], rounds: int, warmup: int) -> dict[str, float]:
    config = EtcdConfig.model_validate(target_config)
    target = EtcdTarget(config, GlobalConfig(poll_interval=15.0, poll_timeout=5.0))
    wall: list[float] = []
    cpu: list[float] = []
    render: list[float] = []
    try:
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
    finally:
        await target.close()
    return {
        "p50": statistics.median(wall),
        "p95": pct(wall, 0.95),
        "max": max(wall),
        "cpu": statistics.mean(cpu),
        "render": statistics.mean(render),
    }


def etcd_version() -> str:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "etcd"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def section(results: dict[str, dict[str, float]], rounds: int) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        f"Run on {now}: {cpu_model()}, Python {platform.python_version()}, {etcd_version()}"
        " (throwaway members on the same machine).",
        "",
        "Rerun from the repository root (a few seconds; needs etcd-server; `--no-write` leaves"
        " this file alone):",
        "",
        "```",
        "python bench/etcd_bench.py",
        "```",
        "",
        f"Each target is polled {rounds} times back to back with every default collector on"
        " (canary put/get/delete, member list, status of every member, alarm list). Wall"
        " time includes the members' own work (an fsync per put and delete); CPU is the"
        " exporter process's; render is turning the snapshot into exposition bytes.",
        "",
        "| target | poll p50 | poll p95 | poll max | exporter CPU / poll | render / poll |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['p50']:.2f} ms | {r['p95']:.2f} ms | {r['max']:.2f} ms |"
            f" {r['cpu']:.2f} ms | {r['render']:.2f} ms |"
        )
    worst = max(r["p95"] for r in results.values())
    verdict = "met" if worst < LIMIT_MS else "NOT met"
    lines += [
        "",
        f"The aim of issue 14 is a poll cost under {LIMIT_MS:g} ms per target: {verdict}"
        f" (worst p95 {worst:.2f} ms).",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace (or append) the ``## etcd`` section; every other section is kept as is."""
    current = DOC.read_text()
    lines = current.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        new = current.rstrip("\n") + "\n\n" + text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        before = "\n".join(lines[:start]).rstrip("\n")
        after = "\n".join(lines[end:])
        new = before + "\n\n" + text + ("\n" + after.rstrip("\n") + "\n" if after else "")
    DOC.write_text(new)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sparki-etcd-bench-") as base:
        single = EtcdMember("single", f"{base}/single").start()
        try:
            target = single.target("single")
            results["single member"] = asyncio.run(measure(target, args.rounds, args.warmup))
        finally:
            single.stop()
        cluster = EtcdCluster(f"{base}/cluster")
        try:
            target = cluster.target("cluster")
            results["three members"] = asyncio.run(measure(target, args.rounds, args.warmup))
        finally:
            cluster.destroy()
    text = section(results, args.rounds)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote the {SECTION} section of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
