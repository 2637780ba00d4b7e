"""Embedded LSM stores for the LSM adapter: a real Badger v2 host (Go, built once per
session from Debian's packages by devstack/badger.py), a LevelDB directory written by
plyvel, and a directory laid out as Pebble lays out its files.

* ``badger_host`` (session): a host writing build-cache entries into its own store;
  ``.target(name)`` gives a config with directory and expvar_url.
* ``badger_factory`` (function): ``badger_factory(rate=...)`` starts a private host.
* ``leveldb_dir`` (session): a closed LevelDB store with a few thousand keys.
* ``pebble_dir`` (function): files named as Pebble names them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.badger import BadgerHost, build


class Host(BadgerHost):
    """A BadgerHost in a temp dir of its own, with the config the adapter takes."""

    def __init__(self, rate: float = 100.0, **options: Any) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="sparki-badger-"))
        super().__init__(self.base / "store", rate=rate, **options)

    def target(self, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "engine": "badger",
            "directory": str(self.directory),
            "expvar_url": self.expvar_url,
            **extra,
        }

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def badger_binary() -> Path:
    return build()


@pytest.fixture(scope="session")
def badger_host(badger_binary: Path) -> Iterator[Host]:
    host = Host(rate=50, binary=badger_binary).start()
    yield host
    host.destroy()


@pytest.fixture
def badger_factory(badger_binary: Path) -> Iterator[Callable[..., Host]]:
    made: list[Host] = []

    def make(**options: Any) -> Host:
        host = Host(binary=badger_binary, **options).start()
        made.append(host)
        return host

    yield make
    for host in made:
        host.destroy()


@pytest.fixture(scope="session")
def leveldb_dir() -> Iterator[Path]:
    import plyvel

    base = Path(tempfile.mkdtemp(prefix="sparki-leveldb-"))
    path = base / "store"
    db = plyvel.DB(str(path), create_if_missing=True, write_buffer_size=256 * 1024)
    value = b"v" * 1024
    for i in range(6000):
        db.put(f"build:{i}:output".encode(), value)
    db.compact_range()
    db.close()
    yield path
    shutil.rmtree(base, ignore_errors=True)


PEBBLE_FILES = {
    "000004.sst": 40_000,
    "000007.sst": 25_000,
    "000009.sst": 3_000,
    "MANIFEST-000001": 512,
    "000010.log": 9_000,
    "OPTIONS-000003": 1_200,
    "CURRENT": 16,
    "LOCK": 0,
}


@pytest.fixture
def pebble_dir(tmp_path: Path) -> Path:
    path = tmp_path / "pebble"
    path.mkdir()
    for name, size in PEBBLE_FILES.items():
        (path / name).write_bytes(b"p" * size)
    return path
