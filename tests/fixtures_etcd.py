"""Throwaway etcd members: Debian's etcd (3.4) on free ports in temp dirs.

* ``etcd_server`` (session): one member, ``.target(name)`` gives a target config.
  Tests must not stop it.
* ``etcd_auth`` (session): one member with authentication on (user ``root``,
  password ``AUTH_PASSWORD``), enabled through the JSON gateway.
* ``etcd_cluster`` (session): three members; tests may stop one and must start it again.
* ``etcd_cluster_private`` (function): three members of its own, for a test that
  changes the membership (``remove``, ``spare`` + ``add``); destroyed after the test.
* ``etcd_factory`` (function): ``etcd_factory(*flags, tls=None)`` starts a private
  member (``--quota-backend-bytes=...`` for the quota test; ``tls=TlsFiles(...)``:
  https only, client certificates required); destroyed after the test.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fixtures_core import free_port, wait_until

from devstack.redis import TlsFiles

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
AUTH_PASSWORD = "etcd-Test-pass-7f1c"


def gateway(
    url: str,
    path: str,
    body: dict[str, Any],
    token: str | None = None,
    context: ssl.SSLContext | None = None,
) -> Any:
    """One JSON gateway call from a test (blocking; fixtures only)."""
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": token} if token else {})},
    )
    with urllib.request.urlopen(req, timeout=5, context=context) as resp:
        return json.loads(resp.read())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdMember:
    """One etcd process; ``start()`` / ``stop()`` keep its data dir and ports."""

    def __init__(
        self, name: str, data_dir: str, extra: tuple[str, ...] = (), tls: TlsFiles | None = None
    ) -> None:
        self.name = name
        self.tls = tls
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.create_default_context(cafile=str(tls.ca_file))
            self.context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.extra = extra
        self.initial_cluster = f"{name}={self.peer_url}"
        self.cluster_state = "new"  # "existing" for a member added to a running cluster
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_once = False

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, wait: bool = True) -> EtcdMember:
        args = [
            ETCD,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            f"--initial-cluster-state={self.cluster_state}",
            "--initial-cluster-token=sparki-test",
            "--logger=zap",
            "--log-level=error",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            *self.extra,
        ]
        if self.tls is not None:
            args += [
                f"--cert-file={self.tls.server_cert}",
                f"--key-file={self.tls.server_key}",
                f"--trusted-ca-file={self.tls.ca_file}",
                "--client-cert-auth",
            ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started_once = True
        if wait:
            self.wait_ready()
        return self

    def status(self) -> Any:
        return gateway(self.url, "/v3/maintenance/status", {}, context=self.context)

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.status().get("leader", "0") != "0",
            timeout,
            retry_on=(OSError, urllib.error.URLError, ValueError),
            what=f"etcd {self.name} ready",
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def target(self, name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "endpoints": [self.url], **extra}

    def etcdctl(self, *args: str) -> str:
        done = subprocess.run(
            [ETCDCTL, f"--endpoints={self.url}", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env={"ETCDCTL_API": "3"},
        )
        return done.stdout


class EtcdCluster:
    """Three members started together."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.members = [EtcdMember(f"m{i}", f"{base}/m{i}") for i in range(3)]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster = initial
        try:
            for m in self.members:
                m.start(wait=False)
            for m in self.members:
                m.wait_ready()
        except BaseException:
            self.destroy()
            raise

    def target(self, name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "endpoints": [m.url for m in self.members], **extra}

    def remove(self, member: EtcdMember) -> None:
        """``etcdctl member remove`` through another member, then stop its process (etcd
        3.4 stops a removed member by itself; an operator stops it anyway).

        etcd refuses a membership change until every member has been connected for a
        few seconds ("unhealthy cluster"), so a cluster just started is given 20 s.
        """
        other = next(m for m in self.members if m is not member and m.proc is not None)
        member_id = format(int(member.status()["header"]["member_id"]), "x")
        deadline = time.monotonic() + 20
        while True:
            try:
                other.etcdctl("member", "remove", member_id)
                break
            except subprocess.CalledProcessError as exc:
                if "unhealthy cluster" not in exc.stderr or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        member.stop()
        self.members.remove(member)

    def spare(self, name: str) -> EtcdMember:
        """A member not started yet (its ports are chosen, so a config can list it)."""
        return EtcdMember(name, tempfile.mkdtemp(prefix=f"{name}-", dir=self.base))

    def add(self, member: EtcdMember) -> EtcdMember:
        """``etcdctl member add``, then start ``member`` (a ``spare``) into the cluster."""
        other = next(m for m in self.members if m.proc is not None)
        other.etcdctl("member", "add", member.name, f"--peer-urls={member.peer_url}")
        member.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in [*self.members, member])
        member.cluster_state = "existing"
        self.members.append(member)
        return member.start()

    def leader(self) -> EtcdMember:
        for m in self.members:
            if m.proc is None:
                continue
            st = m.status()
            if st["leader"] == st["header"]["member_id"]:
                return m
        raise AssertionError("no leader")

    def destroy(self) -> None:
        for m in self.members:
            m.stop()


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdMember]:
    with tempfile.TemporaryDirectory(prefix="sparki-etcd-") as base:
        member = EtcdMember("single", f"{base}/data").start()
        try:
            yield member
        finally:
            member.stop()


@pytest.fixture(scope="session")
def etcd_auth() -> Iterator[EtcdMember]:
    with tempfile.TemporaryDirectory(prefix="sparki-etcd-auth-") as base:
        member = EtcdMember("auth", f"{base}/data").start()
        try:
            gateway(member.url, "/v3/auth/user/add", {"name": "root", "password": AUTH_PASSWORD})
            gateway(member.url, "/v3/auth/role/add", {"name": "root"})
            gateway(member.url, "/v3/auth/user/grant", {"user": "root", "role": "root"})
            gateway(member.url, "/v3/auth/enable", {})
            yield member
        finally:
            member.stop()


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster]:
    with tempfile.TemporaryDirectory(prefix="sparki-etcd-cluster-") as base:
        cluster = EtcdCluster(base)
        try:
            yield cluster
        finally:
            cluster.destroy()


@pytest.fixture
def etcd_cluster_private() -> Iterator[EtcdCluster]:
    with tempfile.TemporaryDirectory(prefix="sparki-etcd-cluster-") as base:
        cluster = EtcdCluster(base)
        try:
            yield cluster
        finally:
            cluster.destroy()


@pytest.fixture
def etcd_factory() -> Iterator[Callable[..., EtcdMember]]:
    started: list[EtcdMember] = []
    base = tempfile.mkdtemp(prefix="sparki-etcd-private-")

    def start(*flags: str, tls: TlsFiles | None = None) -> EtcdMember:
        member = EtcdMember(f"p{len(started)}", f"{base}/p{len(started)}", tuple(flags), tls)
        started.append(member)
        return member.start()

    yield start
    for member in started:
        member.stop()
    shutil.rmtree(base, ignore_errors=True)
