"""The LSM store adapter against a real Badger v2 host (Go, Debian's Badger), a real
LevelDB directory (plyvel) and a directory laid out as Pebble lays out its files.

Numbers are checked against the truth outside the exporter: the JSON the host serves,
os.stat of every file, os.statvfs and df.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fixtures_core import HungServer, free_port, timed
from fixtures_lsm import PEBBLE_FILES, Host

from exporter import config as config_mod
from exporter.adapter import Reason
from exporter.adapters.lsm.config import LsmConfig
from exporter.adapters.lsm.directory import kind_of

FAST = {"poll_interval": "1s", "poll_timeout": "0.9s"}


def cfg(*targets: dict[str, Any]) -> dict[str, Any]:
    return {**FAST, "lsm": list(targets)}


def truth(directory: Path, engine: str) -> dict[str, tuple[int, int]]:
    """(bytes, files) by kind, from os.stat of every file (the walk's reference)."""
    out: dict[str, tuple[int, int]] = {}
    for root, _, files in os.walk(directory):
        for name in files:
            size = os.stat(os.path.join(root, name)).st_size
            kind = kind_of(engine, name)
            b, n = out.get(kind, (0, 0))
            out[kind] = (b + size, n + 1)
    return out


async def by_kind(exp: Any, target: str) -> dict[str, tuple[int, int]]:
    out = {}
    for s in await exp.samples("sparki_lsm_directory_bytes", target=target):
        files = await exp.value("sparki_lsm_directory_files", target=target, kind=s.labels["kind"])
        if s.value or files:
            out[s.labels["kind"]] = (int(s.value), int(files or 0))
    return out


async def reason(exp: Any, target: str) -> tuple[Any, str]:
    state = exp.runner("lsm", target).state
    await exp.wait_for(lambda: state.last_reason is not None, 15)
    return state.last_reason, state.last_error


async def exp_wait(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.1)


# --- Badger through expvar -----------------------------------------------------------


async def test_expvar_values_equal_the_json_the_host_serves(
    badger_factory: Callable[..., Host], start_exporter: Any
) -> None:
    # A host that wrote (closing flushes its memtable into tables), reopened, wrote a
    # fixed number of entries and idles: its counters stand still, so every exported
    # value must equal the host's own JSON exactly.
    host = badger_factory(rate=400)
    await asyncio.sleep(1.0)
    host.stop()
    host.rate, host.count = 1000, 300
    host.start()
    await asyncio.sleep(0.3)
    await exp_wait(lambda: host.written() == 300)
    exp = await start_exporter(cfg(host.target("b")))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="b")
    await exp.polls("lsm", "b", 1)
    vars_ = host.badger_vars()
    d = str(host.directory)
    assert (
        await exp.value("sparki_lsm_badger_puts_total", target="b") == vars_["badger_v2_puts_total"]
    )
    assert (
        await exp.value("sparki_lsm_badger_gets_total", target="b") == vars_["badger_v2_gets_total"]
    )
    for name, var in (
        ("sparki_lsm_badger_blocked_puts_total", "badger_v2_blocked_puts_total"),
        ("sparki_lsm_badger_disk_reads_total", "badger_v2_disk_reads_total"),
        ("sparki_lsm_badger_disk_writes_total", "badger_v2_disk_writes_total"),
        ("sparki_lsm_badger_read_bytes_total", "badger_v2_read_bytes"),
        ("sparki_lsm_badger_written_bytes_total", "badger_v2_written_bytes"),
    ):
        assert await exp.value(name, target="b") == vars_[var], name
    for name, var in (
        ("sparki_lsm_badger_lsm_size_bytes", "badger_v2_lsm_size_bytes"),
        ("sparki_lsm_badger_vlog_size_bytes", "badger_v2_vlog_size_bytes"),
        ("sparki_lsm_badger_pending_writes", "badger_v2_pending_writes_total"),
    ):
        assert await exp.value(name, target="b", dir=d) == vars_[var][d], name
    for level, gets in vars_["badger_v2_lsm_level_gets_total"].items():
        assert (
            await exp.value("sparki_lsm_badger_lsm_level_gets_total", target="b", level=level)
            == gets
        )
    # Badger computed its sizes at open from the same files the walk sees; the 300 new
    # entries sit in the memtable (no new table) and in the value log, which Badger
    # counts only at its next refresh, up to a minute later.
    sst = sum(p.stat().st_size for p in host.directory.glob("*.sst"))
    assert sst > 0 and vars_["badger_v2_lsm_size_bytes"][d] == sst
    assert await exp.value("sparki_lsm_directory_bytes", target="b", kind="sst") == sst
    vlog = await exp.value("sparki_lsm_directory_bytes", target="b", kind="vlog")
    assert vlog is not None and vars_["badger_v2_vlog_size_bytes"][d] <= vlog
    assert vars_["badger_v2_puts_total"] == 600  # each entry and its commit marker
    assert await exp.value("sparki_capability", adapter="lsm", target="b", capability="expvar") == 1


async def test_puts_grow_as_the_host_writes(badger_host: Host, start_exporter: Any) -> None:
    exp = await start_exporter(cfg(badger_host.target("w")))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="w")
    before = badger_host.badger_vars()["badger_v2_puts_total"]
    await exp.polls("lsm", "w", 1)
    first = await exp.value("sparki_lsm_badger_puts_total", target="w")
    middle = badger_host.badger_vars()["badger_v2_puts_total"]
    assert first is not None and before <= first <= middle
    await exp.polls("lsm", "w", 2)
    second = await exp.value("sparki_lsm_badger_puts_total", target="w")
    after = badger_host.badger_vars()["badger_v2_puts_total"]
    assert second is not None and first < second <= after
    # Debian's Badger v2 declares blocked puts but never counts one: present, 0.
    assert await exp.value("sparki_lsm_badger_blocked_puts_total", target="w") == 0
    written = await exp.value("sparki_lsm_badger_written_bytes_total", target="w")
    assert written is not None and written > 0


async def test_directory_bytes_of_a_badger_store_match_os_stat(
    badger_factory: Callable[..., Host], start_exporter: Any
) -> None:
    host = badger_factory(rate=500)
    await asyncio.sleep(1.5)
    host.stop()  # a closed store: its files stand still
    exp = await start_exporter(cfg({**host.target("d"), "expvar_url": None}))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="d")
    want = truth(host.directory, "badger")
    assert await by_kind(exp, "d") == want
    assert "vlog" in want and "manifest" in want and "other" in want
    sst_files = want.get("sst", (0, 0))[1]
    assert await exp.value("sparki_lsm_table_files", target="d") == sst_files
    # Without expvar_url: no expvar collector and nothing missing (no capability at 0
    # to keep SparkiCapabilityMissing firing), and up is 1.
    assert await exp.samples("sparki_capability", adapter="lsm", target="d") == []
    assert await exp.samples("sparki_collector_success", target="d", collector="expvar") == []
    assert await exp.value("sparki_lsm_info", target="d", engine="badger") == 1


# --- LevelDB and Pebble directories --------------------------------------------------


async def test_a_leveldb_directory_by_kind(leveldb_dir: Path, start_exporter: Any) -> None:
    exp = await start_exporter(
        cfg({"name": "l", "engine": "leveldb", "directory": str(leveldb_dir)})
    )
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="l")
    want = truth(leveldb_dir, "leveldb")
    assert await by_kind(exp, "l") == want
    ldb = len(list(leveldb_dir.glob("*.ldb")))
    assert ldb > 1 and want["sst"][1] == ldb
    assert await exp.value("sparki_lsm_table_files", target="l") == ldb
    assert want["manifest"][1] == 1 and want["log"][1] == 1  # MANIFEST-*, the WAL
    assert want["other"][1] == 3  # CURRENT, LOCK, LOG (the info log)


async def test_a_pebble_directory_by_kind(pebble_dir: Path, start_exporter: Any) -> None:
    exp = await start_exporter(cfg({"name": "p", "engine": "pebble", "directory": str(pebble_dir)}))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="p")
    sst = sum(v for k, v in PEBBLE_FILES.items() if k.endswith(".sst"))
    assert await by_kind(exp, "p") == {
        "sst": (sst, 3),
        "manifest": (512, 1),
        "log": (9_000, 1),
        "options": (1_200, 1),
        "other": (16, 2),
    }
    assert await exp.value("sparki_lsm_table_files", target="p") == 3
    assert await exp.value("sparki_lsm_directory_files", target="p", kind="vlog") is None


async def test_filesystem_space_matches_statvfs_and_df(
    pebble_dir: Path, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg({"name": "f", "engine": "pebble", "directory": str(pebble_dir)}))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="f")
    vfs = os.statvfs(pebble_dir)
    size = await exp.value("sparki_lsm_filesystem_size_bytes", target="f")
    assert size == vfs.f_blocks * vfs.f_frsize
    df = (
        subprocess.run(
            ["df", "-B1", "--output=size,avail", str(pebble_dir)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.split("\n")[1]
        .split()
    )
    assert size == int(df[0])
    avail = await exp.value("sparki_lsm_filesystem_avail_bytes", target="f")
    free = await exp.value("sparki_lsm_filesystem_free_bytes", target="f")
    # Others write on this machine too: free space moves a little between readings.
    assert avail is not None and abs(avail - int(df[1])) < 256 * 1024**2
    assert free is not None and free >= avail


async def test_the_walk_stops_at_max_files(pebble_dir: Path, start_exporter: Any) -> None:
    exp = await start_exporter(
        cfg({"name": "m", "engine": "pebble", "directory": str(pebble_dir), "max_files": 3})
    )
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="m")
    assert await exp.value("sparki_lsm_directory_walk_truncated", target="m") == 1
    files = await exp.samples("sparki_lsm_directory_files", target="m")
    assert sum(s.value for s in files) == 3


async def test_a_table_being_written_is_measured_until_it_settles(
    pebble_dir: Path, start_exporter: Any
) -> None:
    # LevelDB and Pebble append to a compaction's output table while writing it; only a
    # table unmodified for a while has its size remembered instead of stat'ed.
    old = pebble_dir / "000004.sst"
    os.utime(old, (1_000_000_000, 1_000_000_000))
    exp = await start_exporter(cfg({"name": "y", "engine": "pebble", "directory": str(pebble_dir)}))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="y")
    sst = sum(v for k, v in PEBBLE_FILES.items() if k.endswith(".sst"))
    assert await exp.value("sparki_lsm_directory_bytes", target="y", kind="sst") == sst
    young = pebble_dir / "000011.sst"
    for step in range(1, 4):
        with young.open("ab") as f:
            f.write(b"t" * 1000)
        await exp.wait_value(
            "sparki_lsm_directory_bytes", sst + 1000 * step, timeout=10, target="y", kind="sst"
        )
    old.unlink()
    await exp.wait_value(
        "sparki_lsm_directory_bytes", sst + 3000 - 40_000, timeout=10, target="y", kind="sst"
    )


async def test_subdirectories_are_walked_to_max_depth(tmp_path: Path, start_exporter: Any) -> None:
    store = tmp_path / "store"
    (store / "a" / "b").mkdir(parents=True)
    (store / "000001.sst").write_bytes(b"x" * 10)
    (store / "a" / "000002.sst").write_bytes(b"x" * 20)
    (store / "a" / "b" / "000003.sst").write_bytes(b"x" * 40)
    exp = await start_exporter(
        cfg({"name": "s", "engine": "pebble", "directory": str(store), "max_depth": 1})
    )
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="s")
    assert await exp.value("sparki_lsm_directory_bytes", target="s", kind="sst") == 30


# --- faults -----------------------------------------------------------------------------


async def test_a_directory_removed_while_running_and_back(
    pebble_dir: Path, start_exporter: Any
) -> None:
    exp = await start_exporter(cfg({"name": "r", "engine": "pebble", "directory": str(pebble_dir)}))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="r")
    away = pebble_dir.with_name("pebble-away")
    pebble_dir.rename(away)
    try:
        await exp.wait_value("sparki_up", 0, timeout=15, adapter="lsm", target="r")
        why, error = await reason(exp, "r")
        assert why == Reason.CONNECT
        assert "does not exist" in error and str(pebble_dir) in error
        got = await exp.samples("sparki_last_poll_error_reason", target="r")
        assert [s.labels["reason"] for s in got] == ["connect"]
        # Its metrics are gone, not frozen at the old values.
        assert await exp.value("sparki_lsm_directory_bytes", target="r", kind="sst") is None
    finally:
        away.rename(pebble_dir)
    await exp.wait_value("sparki_up", 1, timeout=15, adapter="lsm", target="r")
    assert await exp.value("sparki_lsm_table_files", target="r") == 3


async def test_a_directory_that_never_existed_is_a_clear_reason(
    tmp_path: Path, start_exporter: Any
) -> None:
    missing = tmp_path / "not-mounted"
    exp = await start_exporter(cfg({"name": "n", "engine": "badger", "directory": str(missing)}))
    why, error = await reason(exp, "n")
    assert why == Reason.CONNECT
    assert error == f"directory {missing} does not exist (is the store's volume mounted here?)"
    assert await exp.value("sparki_up", adapter="lsm", target="n") == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
async def test_an_unreadable_directory_is_permission(tmp_path: Path, start_exporter: Any) -> None:
    store = tmp_path / "locked"
    store.mkdir()
    store.chmod(0)
    try:
        exp = await start_exporter(cfg({"name": "u", "engine": "badger", "directory": str(store)}))
        why, error = await reason(exp, "u")
        assert why == Reason.PERMISSION and "not readable" in error
    finally:
        store.chmod(0o755)


async def test_expvar_unreachable_fails_the_poll_but_keeps_the_disk_metrics(
    pebble_dir: Path, start_exporter: Any
) -> None:
    # A Badger host that is down: its port refuses connections.
    port = free_port()
    target = {
        "name": "x",
        "engine": "badger",
        "directory": str(pebble_dir),
        "expvar_url": f"http://127.0.0.1:{port}/debug/vars",
    }
    exp = await start_exporter(cfg(target))
    why, error = await reason(exp, "x")
    assert why == Reason.CONNECT and "cannot reach the expvar endpoint" in error
    assert f"127.0.0.1:{port}" not in error
    assert await exp.value("sparki_up", adapter="lsm", target="x") == 0
    # The disk is still watched while the host is down (a full disk may be why).
    assert await exp.value("sparki_lsm_filesystem_size_bytes", target="x")
    assert await exp.value("sparki_collector_success", target="x", collector="directory") == 1
    assert await exp.value("sparki_collector_success", target="x", collector="expvar") == 0
    assert f"127.0.0.1:{port}" not in await exp.scrape()


async def test_a_hung_host_is_a_timeout_within_the_deadline_and_scrapes_stay_fast(
    pebble_dir: Path, hung_server: HungServer, start_exporter: Any
) -> None:
    target = {
        "name": "hang",
        "engine": "badger",
        "directory": str(pebble_dir),
        "expvar_url": f"http://127.0.0.1:{hung_server.port}/debug/vars",
    }
    exp = await start_exporter(cfg(target))
    why, error = await reason(exp, "hang")
    assert why == Reason.TIMEOUT and error == "the expvar endpoint did not answer in time"
    await exp.polls("lsm", "hang", 1)
    state = exp.runner("lsm", "hang").state
    assert state.last_duration is not None and state.last_duration < 0.9
    assert await exp.value("sparki_lsm_table_files", target="hang") == 3
    for _ in range(3):
        with timed() as t:
            await exp.scrape()
        assert t[0] < 0.5, f"a scrape took {t[0]:.2f}s with a hung host"


class FakeExpvar:
    """A tiny HTTP server answering what a test sets: odd replies a host might give."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"{}"
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> FakeExpvar:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(status=self.status, body=self.body)

        app = web.Application()
        app.router.add_get("/debug/vars", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/debug/vars"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def fake_expvar() -> AsyncIterator[FakeExpvar]:
    server = await FakeExpvar().start()
    yield server
    await server.close()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"<html>not found</html>", "did not answer JSON"),
        (200, b"[1, 2]", "did not answer a JSON object"),
        (404, b"404 page not found", "answered HTTP 404"),
    ],
)
async def test_odd_replies_are_protocol_errors_with_a_clear_message(
    pebble_dir: Path,
    fake_expvar: FakeExpvar,
    start_exporter: Any,
    status: int,
    body: bytes,
    message: str,
) -> None:
    fake_expvar.status, fake_expvar.body = status, body
    target = {
        "name": "o",
        "engine": "badger",
        "directory": str(pebble_dir),
        "expvar_url": fake_expvar.url,
    }
    exp = await start_exporter(cfg(target))
    why, error = await reason(exp, "o")
    assert why == Reason.PROTOCOL and message in error, error
    # Fixed: the next poll succeeds.
    fake_expvar.status, fake_expvar.body = 200, json.dumps({"badger_v2_puts_total": 3}).encode()
    await exp.wait_value("sparki_up", 1, timeout=15, adapter="lsm", target="o")
    assert await exp.value("sparki_lsm_badger_puts_total", target="o") == 3


async def test_a_host_without_badger_variables_is_a_capability_not_a_failure(
    pebble_dir: Path, fake_expvar: FakeExpvar, start_exporter: Any, captured_logs: Any
) -> None:
    fake_expvar.body = json.dumps({"cmdline": ["svc"], "memstats": {"Alloc": 1}}).encode()
    target = {
        "name": "c",
        "engine": "badger",
        "directory": str(pebble_dir),
        "expvar_url": fake_expvar.url,
    }
    exp = await start_exporter(cfg(target))
    await exp.wait_value("sparki_up", 1, timeout=15, adapter="lsm", target="c")
    await exp.polls("lsm", "c", 2)
    assert await exp.value("sparki_capability", adapter="lsm", target="c", capability="expvar") == 0
    assert await exp.samples("sparki_lsm_badger_puts_total", target="c") == []
    logged = [line for line in captured_logs().splitlines() if "lacks Badger variables" in line]
    assert len(logged) == 1, logged  # once, not once per poll


# Published names of the Badger releases Debian does not ship (v3 and v4.2+), as their
# y/metrics.go registers them; served by a stand-in host since no such Badger runs here.
V3 = {
    "badger_v3_puts_total": 10,
    "badger_v3_gets_total": 4,
    "badger_v3_blocked_puts_total": 2,
    "badger_v3_disk_reads_total": 1,
    "badger_v3_disk_writes_total": 5,
    "badger_v3_read_bytes": 100,
    "badger_v3_written_bytes": 500,
    "badger_v3_lsm_level_gets_total": {"l0": 3, "l1": 1},
    "badger_v3_lsm_bloom_hits_total": {"l1": 1},
    "badger_v3_lsm_size_bytes": {"/data/a": 2048},
    "badger_v3_vlog_size_bytes": {"/data/a": 4096},
    "badger_v3_pending_writes_total": {"/data/a": 0},
    "badger_v3_compactions_current": 0,
}
V4 = {
    "badger_put_num_user": 10,
    "badger_get_num_user": 4,
    "badger_read_num_vlog": 1,
    "badger_write_num_vlog": 5,
    "badger_read_bytes_vlog": 100,
    "badger_write_bytes_vlog": 500,
    "badger_get_num_lsm": {"l0": 3, "l1": 1},
    "badger_hit_num_lsm_bloom_filter": {"l1": 1},
    "badger_size_bytes_lsm": {"/data/a": 2048},
    "badger_size_bytes_vlog": {"/data/a": 4096},
    "badger_write_pending_num_memtable": {"/data/a": 0},
    "badger_compaction_current_num_lsm": 0,
    "badger_iterator_num_user": 7,
}


@pytest.mark.parametrize(("published", "blocked"), [(V3, 2.0), (V4, None)], ids=["v3", "v4.2"])
async def test_every_badger_generation_maps_to_the_same_metrics(
    pebble_dir: Path,
    fake_expvar: FakeExpvar,
    start_exporter: Any,
    published: dict[str, Any],
    blocked: float | None,
) -> None:
    fake_expvar.body = json.dumps({"cmdline": ["svc"], **published}).encode()
    target = {
        "name": "g",
        "engine": "badger",
        "directory": str(pebble_dir),
        "expvar_url": fake_expvar.url,
    }
    exp = await start_exporter(cfg(target))
    await exp.wait_value("sparki_up", 1, timeout=15, adapter="lsm", target="g")
    assert await exp.value("sparki_lsm_badger_puts_total", target="g") == 10
    assert await exp.value("sparki_lsm_badger_gets_total", target="g") == 4
    assert await exp.value("sparki_lsm_badger_written_bytes_total", target="g") == 500
    assert await exp.value("sparki_lsm_badger_vlog_size_bytes", target="g", dir="/data/a") == 4096
    assert await exp.value("sparki_lsm_badger_lsm_size_bytes", target="g", dir="/data/a") == 2048
    assert await exp.value("sparki_lsm_badger_lsm_level_gets_total", target="g", level="l0") == 3
    assert await exp.value("sparki_lsm_badger_blocked_puts_total", target="g") == blocked
    # v4.2 has no blocked puts at all: not expected there, so nothing is missing.
    assert await exp.value("sparki_capability", adapter="lsm", target="g", capability="expvar") == 1


async def test_host_restarted_mid_run(
    badger_factory: Callable[..., Host], start_exporter: Any
) -> None:
    host = badger_factory(rate=100)
    exp = await start_exporter(cfg(host.target("h")))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="h")
    host.stop()
    await exp.wait_value("sparki_up", 0, timeout=15, adapter="lsm", target="h")
    why, _ = await reason(exp, "h")
    assert why == Reason.CONNECT
    host.start()  # same directory, same port: Badger reopens the store
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="h")
    await exp.polls("lsm", "h", 1)
    puts = await exp.value("sparki_lsm_badger_puts_total", target="h")
    assert puts is not None and puts <= host.badger_vars()["badger_v2_puts_total"]


async def test_nothing_is_left_behind_after_stop(pebble_dir: Path, start_exporter: Any) -> None:
    before = {t.name for t in threading.enumerate()}
    exp = await start_exporter(cfg({"name": "z", "engine": "pebble", "directory": str(pebble_dir)}))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter="lsm", target="z")
    assert any(t.name.startswith("sparki-lsm-z") for t in threading.enumerate())
    await exp.exporter.stop()
    await exp.wait_for(lambda: not {t.name for t in threading.enumerate()} - before, timeout=5)


# --- configuration ----------------------------------------------------------------------


def test_config_names_the_field_in_every_problem() -> None:
    def problems(target: dict[str, Any]) -> str:
        with pytest.raises(config_mod.ConfigError) as info:
            config_mod.validate({"lsm": [{"name": "t", **target}]}, {})
        return "\n".join(info.value.lines())

    text = problems({"engine": "rocksdb", "directory": "/d"})
    assert "lsm.0.engine" in text
    text = problems({"engine": "badger", "directory": "data/badger"})
    assert "lsm.0.directory" in text and "absolute path" in text
    text = problems({"engine": "leveldb", "directory": "/d", "expvar_url": "http://h:1/debug/vars"})
    assert "expvar_url" in text and "only Badger" in text
    text = problems({"engine": "badger", "directory": "/d", "expvar_url": "ftp://h/"})
    assert "lsm.0.expvar_url" in text
    text = problems({"engine": "badger", "directory": "/d", "max_file": 5})
    assert "max_file" in text
    ok = config_mod.validate(
        {
            "lsm": [
                {"name": "t", "engine": "badger", "directory": "/d/", "expvar_url": "http://h:1"}
            ]
        },
        {},
    )
    [(adapter, target)] = ok.targets()
    assert adapter == "lsm" and isinstance(target, LsmConfig)
    assert target.expvar_url == "http://h:1/debug/vars" and target.directory == "/d"


def test_from_env_reads_the_lsm_variables() -> None:
    from exporter.adapters.lsm.target import from_env

    assert from_env({}) == []
    assert from_env(
        {
            "LSM_DIRECTORY": "/var/lib/agent/badger",
            "LSM_EXPVAR_URL": "http://127.0.0.1:6060/debug/vars",
            "SPARKI_LSM_TARGET": "edge-cache",
        }
    ) == [
        {
            "name": "edge-cache",
            "engine": "badger",
            "directory": "/var/lib/agent/badger",
            "expvar_url": "http://127.0.0.1:6060/debug/vars",
        }
    ]
