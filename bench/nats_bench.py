"""Poll cost of the NATS adapter against a real nats-server on this machine.

Issue 14 asks for a poll cost under 20 ms per target. This starts throwaway servers
(Debian's nats-server with JetStream and monitoring), gives them streams, consumers
and idle client connections, polls each with the adapter in-process (every default
collector on: varz, jetstream, connz, healthz, canary) and reports the poll's wall
time, the exporter's CPU time per poll and the time to render the snapshot's
families. The server runs on the same machine, so wall time includes its work.

Results go to stdout and, unless ``--no-write``, to the ``## NATS`` section of
docs/benchmarks.md (other sections are left alone).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_nats import NATS_SERVER, NatsServer  # noqa: E402

from exporter.adapters.nats.config import NatsConfig  # noqa: E402
from exporter.adapters.nats.target import NatsTarget, families  # noqa: E402
from exporter.config import GlobalConfig  # noqa: E402
from exporter.metrics import render_families  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## NATS"
LIMIT_MS = 20.0
# name -> (streams, consumers per stream, idle client connections)
SHAPES = {
    "3 streams, 6 consumers, 10 clients": (3, 2, 10),
    "40 streams, 160 consumers, 300 clients": (40, 4, 300),
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def populate(url: str, streams: int, consumers: int) -> None:
    """Streams with a few messages each and pull consumers that leave some pending."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    for s in range(streams):
        await js.add_stream(name=f"S{s}", subjects=[f"s{s}.>"])
        for _ in range(20):
            await js.publish(f"s{s}.x", b"payload")
        for c in range(consumers):
            sub = await js.pull_subscribe(f"s{s}.>", f"c{c}", stream=f"S{s}")
            msgs = await sub.fetch(c + 1)
            for m in msgs[: len(msgs) // 2]:
                await m.ack()
    await nc.close()


def idle_clients(port: int, count: int) -> list[socket.socket]:
    """Plain blocking sockets that connect, name themselves and then stay quiet."""
    out = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"verbose":false,"name":"idle-%d"}\r\nPING\r\n' % i)
        s.recv(4096)  # PONG
        out.append(s)
    return out


async def measure(target_config: dict[str, Any], rounds: int, warmup: int) -> dict[str, float]:
    config = NatsConfig.model_validate(target_config)
    target = NatsTarget(config, GlobalConfig(poll_interval=15.0, poll_timeout=5.0))
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
        failed = [r.name for r in snap.runs if not r.ok]
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


def nats_version() -> str:
    out = subprocess.run([NATS_SERVER, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "nats-server"


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
        f"Run on {now}: {cpu_model()}, Python {platform.python_version()}, {nats_version()}"
        " (a throwaway server with JetStream on the same machine).",
        "",
        "Rerun from the repository root (a few seconds; needs nats-server; `--no-write` leaves"
        " this file alone):",
        "",
        "```",
        "python bench/nats_bench.py",
        "```",
        "",
        f"Each target is polled {rounds} times back to back with every default collector on"
        " (varz, jetstream with streams, consumers and config, the two bounded connz pages,"
        " healthz, the request/reply canary). Consumers have messages pending and unacked;"
        " the clients are idle connections with names. Wall time includes the server's own"
        " work; CPU is the exporter process's; render is turning the snapshot into"
        " exposition bytes.",
        "",
        "| server | poll p50 | poll p95 | poll max | exporter CPU / poll | render / poll |",
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
    """Replace (or append) the ``## NATS`` section; every other section is kept as is."""
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
    for name, (streams, consumers, clients) in SHAPES.items():
        server = NatsServer().start()
        sockets: list[socket.socket] = []
        try:
            asyncio.run(populate(server.url, streams, consumers))
            sockets = idle_clients(server.port, clients)
            results[name] = asyncio.run(measure(server.target("bench"), args.rounds, args.warmup))
        finally:
            for s in sockets:
                s.close()
            server.destroy()
    text = section(results, args.rounds)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote the {SECTION} section of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
