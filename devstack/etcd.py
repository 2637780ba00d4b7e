"""A throwaway single etcd member for the demo: Debian's etcd-server (3.4) on free ports.

The member lives in a directory of its own (``base``), listens on 127.0.0.1 only and
is stopped by ``destroy()``, so the demo leaves nothing behind. The tests keep their
own richer fixtures (tests/fixtures_etcd.py: clusters, TLS, auth).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from .postgres import free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


class EtcdMember:
    """One etcd member in ``base``; the JSON gateway at ``url``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 30.0) -> EtcdMember:
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            ETCD,
            "--name=demo",
            f"--data-dir={self.base / 'data'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=demo={peer}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=error",
        ]
        with open(self.base / "etcd.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.call("/v3/maintenance/status", {}).get("leader", "0") != "0":
                    return self
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"etcd did not become ready; see {self.base / 'etcd.log'}")
            time.sleep(0.2)

    def call(self, path: str, body: dict[str, Any]) -> Any:
        """One call to the v3 JSON gateway (blocking: load threads and start-up only)."""
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def put(self, key: str, value: str) -> None:
        self.call(
            "/v3/kv/put",
            {
                "key": base64.b64encode(key.encode()).decode(),
                "value": base64.b64encode(value.encode()).decode(),
            },
        )

    def get(self, key: str) -> Any:
        return self.call("/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()})

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)
