"""The store's directory, read from the exporter's mount of it (the sidecar deployment):
bytes and files by file kind, the table file count, and the filesystem's free space.

An embedded store has no server to ask; its files are the truth every engine agrees on.
The walk runs on the target's own thread, never on the event loop, and is bounded
(``max_files``, ``max_depth``) so a directory of millions of files costs one bounded
poll, not a stalled exporter. Tables, which LSM engines never change once written, are
stat'ed until they settle and then remembered, so a steady store costs a listing and a
few stats a poll. A walk still running from an earlier poll (a hung network filesystem)
is not queued behind: the poll fails at once and says so.

Growth rates are not computed here: the recording rules take deriv() of these gauges.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import Future
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .context import DirectoryError, LsmContext

# Every engine's file kinds, in export order; each is exported (0 when absent) so a
# kind appearing or vanishing never makes a series come and go.
KINDS: dict[str, tuple[str, ...]] = {
    "badger": ("sst", "vlog", "manifest", "other"),
    "leveldb": ("sst", "log", "manifest", "other"),
    "pebble": ("sst", "log", "manifest", "options", "other"),
}


# A table unmodified this long is complete: its size is remembered, not stat'ed again.
SETTLED = 30.0


def kind_of(engine: str, name: str) -> str:
    """The kind of one file, as the engine names its files."""
    if engine == "badger":
        if name.endswith(".sst"):
            return "sst"
        if name.endswith(".vlog"):
            return "vlog"
        return "manifest" if name == "MANIFEST" else "other"
    if engine == "leveldb":
        # LevelDB wrote tables as .sst before 1.14 and as .ldb since; both are tables.
        if name.endswith((".ldb", ".sst")):
            return "sst"
        if name.endswith(".log"):
            return "log"  # the write-ahead log; the info log is LOG, without extension
        return "manifest" if name.startswith("MANIFEST-") else "other"
    if name.endswith(".sst"):
        return "sst"
    if name.endswith(".log"):
        return "log"
    if name.startswith("MANIFEST-"):
        return "manifest"
    return "options" if name.startswith("OPTIONS-") else "other"


@dataclass(frozen=True, slots=True)
class Directory:
    engine: str
    kinds: tuple[tuple[str, int, int], ...]  # (kind, bytes, files)
    fs_size: int
    fs_free: int
    fs_avail: int
    truncated: bool

    @property
    def table_files(self) -> int:
        return sum(files for kind, _, files in self.kinds if kind == "sst")


def walk(
    root: str,
    engine: str,
    max_files: int,
    max_depth: int,
    known: dict[str, int] | None = None,
) -> tuple[Directory, dict[str, int]]:
    """Sum sizes by kind below ``root`` (blocking: run it off the event loop).

    ``known`` maps the paths of settled tables seen by the previous walk to their sizes.
    Every engine here writes a table under a new, never reused number and never changes
    it once complete, so a settled table is not stat'ed again: a poll stats only new or
    young tables and the files that do change (logs, value logs, manifests). A table
    counts as settled once unmodified for SETTLED seconds - LevelDB and Pebble append
    to a compaction's output table while they write it. Returns the sizes and the
    settled tables seen this time (the next walk's ``known``).
    """
    known = known or {}
    settled_before = time.time() - SETTLED
    try:
        if not os.path.isdir(root):
            if os.path.exists(root):
                raise DirectoryError(f"{root} is not a directory")
            raise DirectoryError(
                f"directory {root} does not exist (is the store's volume mounted here?)"
            )
        vfs = os.statvfs(root)
        if not os.access(root, os.R_OK | os.X_OK):
            raise PermissionError
    except PermissionError:
        raise DirectoryError(
            f"directory {root} is not readable by the exporter's user", permission=True
        ) from None
    sizes = dict.fromkeys(KINDS[engine], 0)
    counts = dict.fromkeys(KINDS[engine], 0)
    tables: dict[str, int] = {}
    seen = 0
    truncated = False
    stack = [(root, 0)]
    while stack and not truncated:
        path, depth = stack.pop()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if seen >= max_files:
                        truncated = True
                        break
                    try:
                        # Files first: nearly every entry is one (d_type, no syscall).
                        if not entry.is_file(follow_symlinks=False):
                            if depth < max_depth and entry.is_dir(follow_symlinks=False):
                                stack.append((entry.path, depth + 1))
                            continue
                        kind = kind_of(engine, entry.name)
                        if kind == "sst":
                            size = known.get(entry.path)
                            if size is None:
                                st = entry.stat(follow_symlinks=False)
                                size = st.st_size
                                if st.st_mtime < settled_before:
                                    tables[entry.path] = size
                            else:
                                tables[entry.path] = size
                        else:
                            size = entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue  # compaction deleted it between listing and stat
                    seen += 1
                    sizes[kind] += size
                    counts[kind] += 1
        except FileNotFoundError:
            if path == root:
                raise DirectoryError(f"directory {root} disappeared during the walk") from None
        except PermissionError:
            if path == root:
                raise DirectoryError(
                    f"directory {root} is not readable by the exporter's user", permission=True
                ) from None
    part = Directory(
        engine,
        tuple((k, sizes[k], counts[k]) for k in KINDS[engine]),
        vfs.f_blocks * vfs.f_frsize,
        vfs.f_bfree * vfs.f_frsize,
        vfs.f_bavail * vfs.f_frsize,
        truncated,
    )
    return part, tables


class WalkState:
    """The walk in flight, so a hung one is reported instead of queued behind, and the
    tables the last walk saw (with their sizes)."""

    def __init__(self) -> None:
        self.pending: Future[tuple[Directory, dict[str, int]]] | None = None
        self.tables: dict[str, int] = {}


async def collect(ctx: LsmContext) -> Directory:
    state = ctx.walks
    if state.pending is not None and not state.pending.done():
        raise DirectoryError(
            f"the previous walk of {ctx.config.directory} has not finished (a hung filesystem?)"
        )
    c = ctx.config
    state.pending = ctx.walker.submit(
        walk, c.directory, c.engine, c.max_files, c.max_depth, state.tables
    )
    part: Directory
    part, state.tables = await asyncio.wrap_future(state.pending)
    return part


def families(target: str, d: Directory) -> list[Metric]:
    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        f = GaugeMetricFamily(name, doc, labels=["target"])
        f.add_metric([target], value)
        return f

    size = GaugeMetricFamily(
        "sparki_lsm_directory_bytes",
        "Bytes of the store's files by kind (sst: tables, vlog: Badger's value log,"
        " log: write-ahead log, manifest, options, other)",
        labels=["target", "kind"],
    )
    files = GaugeMetricFamily(
        "sparki_lsm_directory_files",
        "Files of the store by kind",
        labels=["target", "kind"],
    )
    for kind, nbytes, count in d.kinds:
        size.add_metric([target, kind], float(nbytes))
        files.add_metric([target, kind], float(count))
    return [
        size,
        files,
        gauge(
            "sparki_lsm_table_files",
            "SSTable files; compaction lowers it, flushes raise it",
            d.table_files,
        ),
        gauge(
            "sparki_lsm_directory_walk_truncated",
            "1 when the walk stopped at max_files: the byte and file counts are too low",
            1.0 if d.truncated else 0.0,
        ),
        gauge("sparki_lsm_filesystem_size_bytes", "Size of the store's filesystem", d.fs_size),
        gauge(
            "sparki_lsm_filesystem_free_bytes",
            "Free bytes of the store's filesystem, including root's reserve",
            d.fs_free,
        ),
        gauge(
            "sparki_lsm_filesystem_avail_bytes",
            "Bytes of the store's filesystem an unprivileged writer can still use",
            d.fs_avail,
        ),
    ]
