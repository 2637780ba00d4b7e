"""A Go service embedding Badger v2 (devstack/badger_host/main.go), built from Debian's
``golang-go`` and ``golang-github-dgraph-io-badger-dev``, offline, and started on a
free port.

Shared by the LSM adapter's tests (tests/fixtures_lsm.py), its benchmark and the demo.
Debian ships Badger v2 as ``github.com/dgraph-io/badger`` under /usr/share/gocode/src,
while its own sources import ``github.com/dgraph-io/badger/v2``: the build runs in
GOPATH mode (GO111MODULE=off) with a private GOPATH whose
``src/github.com/dgraph-io/badger/v2`` links to Debian's copy, and /usr/share/gocode
(Badger's dependencies, also Debian packages) after it. The binary is cached under the
temp dir by the hash of main.go, so a test session builds it once (about 10 s cold).

    binary = build()
    host = BadgerHost(Path("/tmp/store"), rate=200).start()
    host.expvar_url  # http://127.0.0.1:<port>/debug/vars
    host.vars()      # the JSON it serves
    host.stop()      # SIGTERM: Badger closes cleanly; start() again reopens the store
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "badger_host" / "main.go"
GOCODE = Path("/usr/share/gocode/src")
BADGER_SRC = GOCODE / "github.com" / "dgraph-io" / "badger"
GO = shutil.which("go") or "/usr/bin/go"


class BuildError(RuntimeError):
    """The Go host could not be built (toolchain or Debian's Badger source missing)."""


def build(cache: Path | None = None) -> Path:
    """The host binary, built once per version of main.go (cached by its hash)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    root = (cache or Path(tempfile.gettempdir())) / f"sparki-badger-host-{digest}"
    binary = root / "badger_host"
    if binary.exists():
        return binary
    if not Path(GO).exists() or not BADGER_SRC.is_dir():
        raise BuildError(
            "needs Debian's golang-go and golang-github-dgraph-io-badger-dev"
            " (apt-get install -y golang-go golang-github-dgraph-io-badger-dev)"
        )
    work = Path(tempfile.mkdtemp(prefix="sparki-badger-build-"))
    try:
        link = work / "gopath" / "src" / "github.com" / "dgraph-io" / "badger" / "v2"
        link.parent.mkdir(parents=True)
        link.symlink_to(BADGER_SRC)
        pkg = work / "gopath" / "src" / "badgerhost"
        pkg.mkdir(parents=True)
        shutil.copy(SOURCE, pkg / "main.go")
        env = {
            **os.environ,
            "GO111MODULE": "off",
            "GOPATH": f"{work / 'gopath'}:{GOCODE.parent}",
            "GOCACHE": str(work / "cache"),
            "GOFLAGS": "",
            "CGO_ENABLED": "1",  # Badger's zstd binding (DataDog/zstd) is cgo
        }
        tmp_binary = work / "badger_host"
        done = subprocess.run(
            [GO, "build", "-o", str(tmp_binary), "."],
            cwd=pkg,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise BuildError(f"go build failed:\n{done.stderr[-4000:]}")
        root.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_binary, binary)  # atomic: parallel sessions race harmlessly
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return binary


class BadgerHost:
    """One host process over one Badger directory; ``stop()`` and ``start()`` keep the
    directory and the port (a host restart)."""

    def __init__(
        self,
        directory: Path,
        rate: float = 100.0,
        count: int = 0,
        value_size: int = 2048,
        ttl: str = "3h",
        port: int = 0,
        binary: Path | None = None,
    ) -> None:
        self.directory = directory
        self.rate = rate
        self.count = count  # entries to write before idling (0: write until stopped)
        self.value_size = value_size
        self.ttl = ttl
        self.port = port
        self.binary = binary or build()
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def expvar_url(self) -> str:
        return self.url + "/debug/vars"

    def start(self, timeout: float = 30.0) -> BadgerHost:
        args = [
            str(self.binary),
            "-dir",
            str(self.directory),
            "-addr",
            f"127.0.0.1:{self.port}",
            "-rate",
            str(self.rate),
            "-count",
            str(self.count),
            "-value-size",
            str(self.value_size),
            "-ttl",
            self.ttl,
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("ready "):
            err = (
                self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
            )
            self.kill()
            raise RuntimeError(f"badger_host did not start: {err.strip()[-2000:]}")
        self.port = int(line[0].split()[1].rsplit(":", 1)[1])
        return self

    def _readline(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def vars(self) -> dict[str, Any]:
        """The JSON the host serves at /debug/vars."""
        with urllib.request.urlopen(self.expvar_url, timeout=5) as r:
            data: dict[str, Any] = json.load(r)
        return data

    def badger_vars(self) -> dict[str, Any]:
        return {k: v for k, v in self.vars().items() if k.startswith("badger_")}

    def written(self) -> int:
        """Entries the host has written so far."""
        with urllib.request.urlopen(self.url + "/written", timeout=5) as r:
            return int(r.read())

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM: the host stops writing, closes Badger and exits 0."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def kill(self) -> None:
        """SIGKILL (a crash): Badger replays its value log on the next open."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
