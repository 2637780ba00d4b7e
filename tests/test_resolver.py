"""A DNS server that never answers (issue 16, item 4), in a network namespace of the
test's own: the exporter runs inside it with a resolv.conf pointing at a UDP sink on
the namespace's loopback, beside a real redis-server reached as ``localhost``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fixtures_core import free_port
from prometheus_client.parser import text_string_to_metric_families

from devstack.exporter import exporter_argv

SINK = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('127.0.0.1', 53))\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    s.recv(4096)\n"
)


class Namespace:
    """``ip netns`` with a veth pair to the test's namespace and a hung resolver."""

    def __init__(self) -> None:
        self.name = f"sparki-dns-{os.getpid()}"
        pid = os.getpid()
        subnet = f"10.{200 + pid % 50}.{(pid // 50) % 256}"
        self.host_ip, self.ns_ip = f"{subnet}.1", f"{subnet}.2"
        self.veth = f"spd{os.getpid() % 100000}"
        self.etc = Path("/etc/netns") / self.name
        self.procs: list[subprocess.Popen[str]] = []

    def run(self, *argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=10)

    def setup(self) -> None:
        self.run("ip", "netns", "add", self.name)
        self.run(
            "ip",
            "link",
            "add",
            self.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth-s",
            "netns",
            self.name,
        )
        self.run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        self.run("ip", "link", "set", self.veth, "up")
        self.exec("ip", "addr", "add", f"{self.ns_ip}/30", "dev", "eth-s")
        self.exec("ip", "link", "set", "eth-s", "up")
        self.exec("ip", "link", "set", "lo", "up")
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "resolv.conf").write_text(
            "nameserver 127.0.0.1\noptions timeout:5 attempts:2\n"
        )
        sink = self.spawn([sys.executable, "-c", SINK], stdout=subprocess.PIPE)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"

    def exec(self, *argv: str) -> None:
        self.run("ip", "netns", "exec", self.name, *argv)

    def spawn(self, argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        proc: subprocess.Popen[str] = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            text=True,
            **kwargs,  # type: ignore[call-overload]
        )
        self.procs.append(proc)
        return proc

    def teardown(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
        shutil.rmtree(self.etc, ignore_errors=True)


@pytest.fixture
def hung_dns() -> Iterator[Namespace]:
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (ip netns)")
    ns = Namespace()
    try:
        ns.setup()
    except (subprocess.CalledProcessError, OSError) as exc:
        ns.teardown()
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"network namespaces not permitted here: {detail.decode(errors='replace')}")
    try:
        yield ns
    finally:
        ns.teardown()


def _redis(ns: Namespace, port: int) -> subprocess.Popen[str]:
    proc = ns.spawn(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    return proc


def test_hung_resolver_only_affects_its_targets(hung_dns: Namespace, tmp_path: Path) -> None:
    """Eight targets behind a DNS server that never answers: the ``localhost`` target
    polls without a single failure (and reconnects at once after its server restarts),
    reloads answer in well under a second, and the hung targets fail with a clear
    name-resolution error within their poll timeout."""
    ns = hung_dns
    redis_port = free_port()
    redis = _redis(ns, redis_port)
    hung = [f"cache-{i}.sparki-hung.example" for i in range(8)]
    cfg = tmp_path / "sparki.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "poll_interval": "1s",
                "poll_timeout": "800ms",
                "redis": [{"name": "local", "url": f"redis://localhost:{redis_port}"}]
                + [{"name": f"hung{i}", "url": f"redis://{h}:6379"} for i, h in enumerate(hung)],
            }
        )
    )
    port = free_port()
    log = tmp_path / "exporter.log"
    argv = exporter_argv(cfg, port, "--web.enable-lifecycle")
    argv[argv.index("--web.listen-address") + 1] = f"{ns.ns_ip}:{port}"
    exporter = ns.spawn(argv, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    base = f"http://{ns.ns_ip}:{port}"

    def get(path: str, method: str = "GET") -> tuple[int, str, float]:
        start = time.monotonic()
        request = urllib.request.Request(base + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                return resp.status, resp.read().decode(), time.monotonic() - start
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), time.monotonic() - start

    def values(name: str) -> dict[str, float]:
        text = get("/metrics")[1]
        return {
            s.labels["target"]: s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name == name
        }

    deadline = time.monotonic() + 30
    while True:
        assert exporter.poll() is None, log.read_text()
        try:
            if get("/readyz")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)

    reload_times = []
    ups = []
    end = time.monotonic() + 8
    while time.monotonic() < end:
        status, _, took = get("/-/reload", "POST")
        assert status == 200
        reload_times.append(took)
        ups.append(values("sparki_up"))
        time.sleep(0.5)
    assert max(reload_times) < 1.0, reload_times
    assert all(u["local"] == 1.0 for u in ups), ups
    errors = {
        (s.labels["target"], s.labels["reason"]): s.value
        for fam in text_string_to_metric_families(get("/metrics")[1])
        for s in fam.samples
        if s.name == "sparki_poll_errors_total"
    }
    assert sum(v for (t, _), v in errors.items() if t == "local") == 0, errors
    assert all(ups[-1][f"hung{i}"] == 0.0 for i in range(8)), ups[-1]
    page = get("/")[1]
    assert "name resolution did not answer" in page or "name resolution is not answering" in page

    # The local server restarts: the target reconnects (resolving localhost again)
    # while the hung lookups are still pending, and is back up within two polls.
    redis.terminate()
    redis.wait(5)
    deadline = time.monotonic() + 10
    while values("sparki_up")["local"] == 1.0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    _redis(ns, redis_port)
    down_at = time.monotonic()
    while values("sparki_up")["local"] != 1.0:
        assert time.monotonic() - down_at < 4.0, log.read_text()[-3000:]
        time.sleep(0.1)
