"""Command-line flags spelled as the Prometheus tools spell them.

``--log.level warn`` is how every Prometheus exporter is told to be quiet, and
exporter-toolkit accepts ``--web.listen-address`` several times (say, the pod IP and
loopback). Both are run here on a real exporter process polling a real Redis.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from fixtures_core import free_port
from fixtures_redis import RedisServer

from devstack.exporter import exporter_argv


def _config(tmp_path: Path, redis_server: RedisServer, level: str = "info") -> Path:
    cfg = tmp_path / "sparki.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "poll_interval": "1s",
                "poll_timeout": "800ms",
                "log": {"level": level},
                "redis": [redis_server.target("cache")],
            }
        )
    )
    return cfg


def _ready(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def _run(argv: list[str], ports: list[int]) -> tuple[int, str]:
    """Start, wait until every port answers /readyz, stop with SIGTERM; (exit code, stderr)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        ready = [_ready(port, deadline) for port in ports]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert all(ready), f"not serving on every address {ports}: {ready}\n{err}"
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.parametrize("level", ["warn", "warning"])
def test_log_level_warn_in_both_spellings(
    level: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    port = free_port()
    code, err = _run(
        exporter_argv(_config(tmp_path, redis_server), port, "--log.level", level), [port]
    )
    assert code == 0, err
    # Info lines ("listening", "stopped") are below warn: nothing at all is logged.
    assert "listening" not in err and "stopped" not in err, err


def test_log_level_warn_in_the_config_file(tmp_path: Path, redis_server: RedisServer) -> None:
    cfg = _config(tmp_path, redis_server, level="warn")
    checked = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    port = free_port()
    code, err = _run(exporter_argv(cfg, port), [port])
    assert code == 0 and "listening" not in err, err


def test_several_listen_addresses(tmp_path: Path, redis_server: RedisServer) -> None:
    first, second = free_port(), free_port()
    argv = [*exporter_argv(_config(tmp_path, redis_server), first)]
    argv += ["--web.listen-address", f"127.0.0.1:{second}"]
    code, err = _run(argv, [first, second])
    assert code == 0, err
    assert f"address=127.0.0.1:{first},127.0.0.1:{second}" in err, err


def test_an_address_in_use_fails_naming_it(tmp_path: Path, redis_server: RedisServer) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        free = free_port()
        argv = [*exporter_argv(_config(tmp_path, redis_server), free)]
        argv += ["--web.listen-address", f"127.0.0.1:{taken}"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{taken}" in result.stderr and "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_names_every_adapter_and_the_variables_that_configure_it() -> None:
    """--help is built from the adapters shipped (their catalogs), so a new adapter is
    named there without editing the command line; and each variable it lists does
    configure a target of its adapter on its own."""
    from exporter import adapters

    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert set(adapters.servers()) == set(adapters.names())
    for name, servers in adapters.servers().items():
        assert f" {servers}" in text, (name, servers)
    for name, variables in adapters.env_variables().items():
        spec = adapters.load(name)
        assert spec.from_env({}) == [], name
        for var in variables:
            assert var in text, (name, var)
            assert spec.from_env({var: "x"}), f"{var} alone configures no {name} target"
