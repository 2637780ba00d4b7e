"""The exporter's own process metrics agree with what the kernel says about the process."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml
from fixtures_core import free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families

from devstack.exporter import exporter_argv


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels or family.name.startswith("python_info")
    }


def _vm_rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_process_metrics_match_the_kernels_view(tmp_path: Path) -> None:
    cfg = tmp_path / "sparki.yml"
    dead = f"redis://127.0.0.1:{free_port()}/0"
    cfg.write_text(yaml.safe_dump({"redis": [{"name": "cache", "url": dead}]}))
    port = free_port()
    log = (tmp_path / "exporter.log").open("wb")
    proc = subprocess.Popen(exporter_argv(cfg, port), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        first = wait_until(lambda: _try(url), timeout=30, what="exporter answering")
        rss = _vm_rss(proc.pid)
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        # The reading is at most a few seconds old: RSS within 25 %, fds within a few.
        assert abs(first["process_resident_memory_bytes"] - rss) < 0.25 * rss, (first, rss)
        assert abs(first["process_open_fds"] - fds) <= 4, (first, fds)
        assert first["process_max_fds"] > 0
        started = first["process_start_time_seconds"]
        assert abs(started - (time.time() - _age(proc.pid))) < 5

        # Refreshed in the background: the CPU counter moves without a scrape asking.
        def advanced() -> dict[str, float] | None:
            now = _try(url)
            cpu = first["process_cpu_seconds_total"]
            return now if now and now["process_cpu_seconds_total"] > cpu else None

        later = wait_until(advanced, timeout=30, what="process_cpu_seconds_total to advance")
        assert later["process_start_time_seconds"] == started
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _try(url: str) -> dict[str, float] | None:
    try:
        return _scrape(url)
    except OSError:
        return None


def _age(pid: int) -> float:
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime")
    )
    return time.time() - (boot + ticks / os.sysconf("SC_CLK_TCK"))
