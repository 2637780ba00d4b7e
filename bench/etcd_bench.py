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
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import docsection  # noqa: E402
import pollcost  # noqa: E402
from fixtures_etcd import EtcdCluster, EtcdMember  # noqa: E402

from exporter.adapters.etcd.config import EtcdConfig  # noqa: E402
from exporter.adapters.etcd.target import EtcdTarget, families  # noqa: E402
from exporter.config import GlobalConfig  # noqa: E402

SECTION = "## etcd"


async def measure(target_config: dict[str, Any], rounds: int, warmup: int) -> dict[str, float]:
    config = EtcdConfig.model_validate(target_config)
    target = EtcdTarget(config, GlobalConfig(poll_interval=15.0, poll_timeout=5.0))
    return await pollcost.measure(target, families, rounds, warmup)


def etcd_version() -> str:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "etcd"


def section(results: dict[str, dict[str, float]], rounds: int) -> str:
    now = pollcost.now()
    lines = [
        SECTION,
        "",
        f"Run on {now}: {pollcost.cpu_model()}, Python {platform.python_version()},"
        f" {etcd_version()}"
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
        *pollcost.table(results, "target"),
    ]
    lines += [
        "",
        f"The aim of issue 14 is a poll cost under {pollcost.LIMIT_MS:g} ms per target:"
        f" {pollcost.verdict(results)}.",
    ]
    return "\n".join(lines) + "\n"


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
        docsection.write_section(SECTION, text)
        print(f"wrote the {SECTION} section of {docsection.DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
