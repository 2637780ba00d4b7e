#!/usr/bin/env python3
"""Start to first /healthz of the image's install, with and without compiled bytecode.

The image runs with a read-only root and ``PYTHONDONTWRITEBYTECODE``: whatever is not
compiled when the image is built is compiled again at every start, in memory, and
thrown away. The Dockerfile therefore compiles the whole virtual environment at build
time. This benchmark replays the Dockerfile's build stage in a plain venv (the lock with
hashes checked, the project on top with --no-deps, ``compileall`` as the Dockerfile runs
it; no container engine needed) and times ``sparki-exporter`` from exec to its first
200 on /healthz, alternating between that venv as built and the same venv with every
``__pycache__`` removed (what an image built without the compile step runs), both with
``PYTHONDONTWRITEBYTECODE=1``. RSS after start is read from /proc.

Run from the repository root:  .venv/bin/python bench/start_bench.py
Not part of the test suite; needs the packages of requirements.lock from the index
pip is configured with. Results go to the ``## Start`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import docsection  # noqa: E402
from fixtures_core import free_port  # noqa: E402

SECTION = "## Start"


def build(env: Path, src: Path) -> None:
    """The Dockerfile's build stage, in a venv at ``env``."""
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    pip = [str(env / "bin" / "pip"), "--disable-pip-version-check", "install", "--quiet"]
    lock = ["--require-hashes", "--only-binary=:all:", "--no-deps", "--no-compile"]
    subprocess.run([*pip, *lock, "-r", str(ROOT / "requirements.lock")], check=True, timeout=900)
    shutil.copytree(
        ROOT / "exporter", src / "exporter", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([*pip, "--no-deps", "--no-compile", str(src)], check=True, timeout=600)


def compile_all(env: Path) -> None:
    subprocess.run(
        [
            str(env / "bin" / "python"),
            *("-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"),
            str(env / "lib"),
        ],
        check=True,
        timeout=600,
    )


def strip_bytecode(env: Path) -> None:
    for cache in list(env.rglob("__pycache__")):
        shutil.rmtree(cache)


def start_once(env: Path, config: Path) -> tuple[float, float]:
    """Seconds from exec to the first 200 on /healthz, and RSS (MiB) then."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    argv = [
        str(env / "bin" / "sparki-exporter"),
        *("--config", str(config), "--web.listen-address", f"127.0.0.1:{port}"),
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env={**clean, "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = start + 30
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        elapsed = time.perf_counter() - start
                        break
            except OSError:
                time.sleep(0.005)
        else:
            raise RuntimeError("no /healthz within 30 s")
        rss = 0.0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        return elapsed, rss
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="starts of each kind, alternating")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sparki-start-"))
    try:
        env = tmp / "opt"
        build(env, tmp / "src")
        config = tmp / "sparki.yml"
        # One PostgreSQL target nobody listens for: start-up does not wait for targets.
        config.write_text(
            f"postgres:\n  - name: pg\n    dsn: host=127.0.0.1 port={free_port()} user=x\n"
        )
        results: dict[str, list[tuple[float, float]]] = {"compiled": [], "not compiled": []}
        compile_all(env)
        start_once(env, config)  # warm the page cache once
        for _ in range(args.rounds):
            results["compiled"].append(start_once(env, config))
        strip_bytecode(env)
        start_once(env, config)
        for _ in range(args.rounds):
            results["not compiled"].append(start_once(env, config))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for kind, runs in results.items():
        times = [t for t, _ in runs]
        rows.append(
            f"| {kind} | {statistics.median(times) * 1000:.0f} ms | "
            f"{max(times) * 1000:.0f} ms | {statistics.median(r for _, r in runs):.1f} MiB |"
        )
    ratio = statistics.median(t for t, _ in results["not compiled"]) / statistics.median(
        t for t, _ in results["compiled"]
    )
    text = "\n".join(
        [
            SECTION,
            "",
            f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with "
            "`.venv/bin/python bench/start_bench.py`: the Dockerfile's build stage replayed "
            "in a venv (no container engine here), then `sparki-exporter` started "
            f"{args.rounds} times per line with `PYTHONDONTWRITEBYTECODE=1` and one "
            "PostgreSQL target (unreachable: start-up does not wait for targets), timed from "
            "exec to the first 200 on `/healthz`. *compiled*: the venv as the Dockerfile "
            "builds it (`compileall` at build time); *not compiled*: the same venv with "
            "every `__pycache__` removed, what an image built with `--no-compile` and no "
            "compile step runs.",
            "",
            "| install | start to /healthz, median | max | RSS after start |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Without the compile step a start takes {ratio:.1f}x as long.",
            "",
        ]
    )
    print(text)
    if not args.no_write:
        docsection.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
