"""Footprint: an exporter imports only the adapters its config names.

Every adapter module pulls in its client library (psycopg, redis-py, boto3/botocore);
a Redis-only exporter paid for all three (~18 MB of RSS). Checked in a fresh
interpreter, since the test process itself has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = """
import json, sys
from exporter.config import load
from exporter.service import Exporter
Exporter(load(sys.argv[1]))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
      ("psycopg", "redis", "boto3", "botocore", "asyncmy", "nats", "exporter"))))
"""

SECTIONS = {
    "mysql": "mysql:\n  - name: db\n    dsn: mysql://u@127.0.0.1:1/\n",
    "postgres": "postgres:\n  - name: db\n    dsn: postgresql://u@127.0.0.1:1/postgres\n",
    "redis": "redis:\n  - name: cache\n    url: redis://127.0.0.1:1/0\n",
    "s3": "s3:\n  - name: blobs\n    bucket: blobs\n    endpoint_url: http://127.0.0.1:1\n",
    "memcached": "memcached:\n  - name: sessions\n    nodes: [127.0.0.1:1]\n",
    "etcd": "etcd:\n  - name: kube\n    endpoints: [http://127.0.0.1:1]\n",
    "nats": "nats:\n  - name: events\n    url: nats://127.0.0.1:1\n",
    "lsm": "lsm:\n  - name: edge\n    engine: badger\n    directory: /var/lib/agent/badger\n",
}
# etcd talks to its JSON gateway with aiohttp, which the core already uses: no driver;
# neither does lsm (os.scandir, and aiohttp for expvar).
LIBRARIES = {
    "mysql": "asyncmy",
    "postgres": "psycopg",
    "redis": "redis",
    "s3": "botocore",
    "nats": "nats",
}


@pytest.mark.parametrize("only", sorted(SECTIONS))
def test_only_configured_adapters_are_imported(only: str, tmp_path: Path) -> None:
    cfg = tmp_path / "sparki.yml"
    cfg.write_text(SECTIONS[only])
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(result.stdout))
    for adapter in SECTIONS:
        loaded = f"exporter.adapters.{adapter}.spec" in modules
        assert loaded == (adapter == only), (adapter, sorted(modules))
    for adapter, library in LIBRARIES.items():
        assert (library in modules) == (adapter == only), (library, sorted(modules))
    # The Memcached adapter speaks the protocol itself: its collectors load only with it.
    assert ("exporter.adapters.memcached.stats" in modules) == (only == "memcached")
    assert ("exporter.adapters.lsm.directory" in modules) == (only == "lsm")


def test_an_unknown_section_is_still_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "sparki.yml"
    cfg.write_text(SECTIONS["redis"] + "postgress:\n  - name: x\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "postgress" in result.stderr, result.stderr
