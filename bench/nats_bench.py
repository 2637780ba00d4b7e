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
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import docsection  # noqa: E402
import pollcost  # noqa: E402
from fixtures_nats import NATS_SERVER, NatsServer  # noqa: E402

from exporter.adapters.nats.config import NatsConfig  # noqa: E402
from exporter.adapters.nats.target import NatsTarget, families  # noqa: E402
from exporter.config import GlobalConfig  # noqa: E402

SECTION = "## NATS"
# name -> (streams, consumers per stream, idle client connections)
SHAPES = {
    "3 streams, 6 consumers, 10 clients": (3, 2, 10),
    "40 streams, 160 consumers, 300 clients": (40, 4, 300),
}


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
    return await pollcost.measure(target, families, rounds, warmup)


def nats_version() -> str:
    out = subprocess.run([NATS_SERVER, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "nats-server"


def section(results: dict[str, dict[str, float]], rounds: int) -> str:
    now = pollcost.now()
    lines = [
        SECTION,
        "",
        f"Run on {now}: {pollcost.cpu_model()}, Python {platform.python_version()},"
        f" {nats_version()}"
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
        *pollcost.table(results, "server"),
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
        docsection.write_section(SECTION, text)
        print(f"wrote the {SECTION} section of {docsection.DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
