"""--web.config.file: exporter-toolkit TLS and basic auth, with a real TLS client."""

from __future__ import annotations

import asyncio
import base64
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
from fixtures_core import free_port
from fixtures_pg import PgCluster

from exporter import config as config_mod
from exporter.config import ConfigError
from exporter.service import Exporter
from exporter.webconfig import BasicAuth, load_web_config, parse_basic

PASSWORD = "correct horse battery staple"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


class Certs:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        server.cert_chain_pems[0].write_to_path(str(directory / "server.crt"))
        server.private_key_pem.write_to_path(str(directory / "server.key"))
        self.ca.cert_pem.write_to_path(str(directory / "ca.crt"))
        self.client_ca = trustme.CA()
        self.client_ca.cert_pem.write_to_path(str(directory / "clients-ca.crt"))
        client = self.client_ca.issue_cert("prometheus@example.com")
        client.private_key_and_cert_chain_pem.write_to_path(str(directory / "client.pem"))
        stranger = trustme.CA().issue_cert("mallory@example.com")
        stranger.private_key_and_cert_chain_pem.write_to_path(str(directory / "stranger.pem"))

    def client_context(self, cert: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        if cert:
            ctx.load_cert_chain(str(self.dir / cert))
        return ctx


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


@pytest.fixture
async def web_exporter(
    pg_primary: PgCluster,
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Exporter] = []

    async def start(web_file: Path) -> Exporter:
        cfg = config_mod.validate(
            {"poll_interval": "30s", "poll_timeout": "5s", "postgres": [pg_primary.target("w")]},
            {},
        )
        exporter = Exporter(cfg, web_config=load_web_config(web_file))
        await exporter.start("127.0.0.1", 0)
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        await exporter.stop()


async def fetch(
    url: str, ctx: ssl.SSLContext | bool | None = None, auth: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": auth} if auth else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        session.get(url, ssl=ctx if ctx is not None else True, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_tls_and_basic_auth_with_a_real_tls_client(
    certs: Certs, web_exporter, tmp_path: Path
) -> None:
    web = write(
        tmp_path / "web.yml",
        # Relative paths are resolved against the web config's own directory.
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    exp = await web_exporter(web)
    assert exp.scheme == "https"
    base = f"https://127.0.0.1:{exp.port}"
    ctx = certs.client_context()

    for path in ("/metrics", "/healthz", "/", "/probe?target=w", "/readyz"):
        status, headers, body = await fetch(base + path, ctx, basic("prometheus", PASSWORD))
        assert status in (200, 503), (path, status)  # /readyz may still be waiting
        assert headers.get("X-Frame-Options") == "deny"
    status, _, body = await fetch(base + "/metrics", ctx, basic("prometheus", PASSWORD))
    assert status == 200 and b"sparki_up" in body

    # Wrong password, unknown user, no credentials: 401 on every path, /healthz too.
    for auth in (
        basic("prometheus", "wrong"),
        basic("nobody", PASSWORD),
        None,
    ):
        for path in ("/metrics", "/healthz", "/probe?target=w", "/nope"):
            status, headers, body = await fetch(base + path, ctx, auth)
            assert status == 401, (path, auth)
            assert headers["WWW-Authenticate"].startswith("Basic ")
            assert b"sparki" not in body

    # Malformed Authorization headers are 401 too, never 500.
    for header in ("Basic", "Basic !!!", "Bearer x", "Basic " + "A" * 5000, "basic bm9jb2xvbg=="):
        async with (
            aiohttp.ClientSession() as session,
            session.get(base + "/metrics", ssl=ctx, headers={"Authorization": header}) as resp,
        ):
            assert resp.status == 401, header

    # Plain HTTP to the TLS port fails: no HTTP answer, and no metrics.
    with pytest.raises(aiohttp.ClientError):
        await fetch(f"http://127.0.0.1:{exp.port}/metrics")
    # A client that does not trust the server's CA fails the handshake.
    with pytest.raises(aiohttp.ClientError):
        await fetch(base + "/healthz", ssl.create_default_context())


async def test_client_certificates_are_required_when_configured(
    certs: Certs, web_exporter, tmp_path: Path
) -> None:
    web = write(
        tmp_path / "web.yml",
        f"tls_server_config:\n  cert_file: {tmp_path}/server.crt\n"
        f"  key_file: {tmp_path}/server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        "  client_ca_file: clients-ca.crt\n  min_version: TLS13\n",
    )
    exp = await web_exporter(web)
    base = f"https://127.0.0.1:{exp.port}"
    status, _, _ = await fetch(base + "/healthz", certs.client_context("client.pem"))
    assert status == 200
    for ctx in (certs.client_context(), certs.client_context("stranger.pem")):
        with pytest.raises(aiohttp.ClientError):
            await fetch(base + "/healthz", ctx)
    old = certs.client_context("client.pem")
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(aiohttp.ClientError):
        await fetch(base + "/healthz", old)


async def test_successful_checks_are_cached_and_failures_are_not() -> None:
    auth = BasicAuth({"p": HASH})
    calls = 0
    real = auth._check

    def counting(password: str, hashed: bytes | None) -> bool:
        nonlocal calls
        calls += 1
        return real(password, hashed)

    auth._check = counting  # type: ignore[method-assign]
    good = basic("p", PASSWORD)
    bad = basic("p", "nope")
    assert await auth.check(good)
    assert await auth.check(good)
    assert calls == 1
    assert not await auth.check(bad)
    assert not await auth.check(bad)
    assert calls == 3
    # The cache holds no password: only HMAC digests.
    assert all(PASSWORD.encode() not in key for key in auth._ok)
    # A new hash for the same user never matches an old entry.
    other = BasicAuth({"p": bcrypt.hashpw(b"else", bcrypt.gensalt(4)).decode()})
    other._ok = auth._ok
    assert not await other.check(good)
    # Unknown users cost a bcrypt check too (no timing shortcut), and fail.
    assert not await auth.check(basic("ghost", PASSWORD))
    assert not await auth.check(basic("p", "x" * 100))  # > 72 bytes


async def test_unknown_users_take_the_same_bcrypt_path_as_known_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No user enumeration by timing: an unknown user costs a real bcrypt check at the
    configured cost, as long as a known user with a wrong password."""
    cost = 9  # ~30 ms a check: far above scheduling noise, cheap enough for 14 checks
    auth = BasicAuth({"p": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(cost)).decode()})
    costs: list[int] = []
    real = bcrypt.checkpw

    def recording(password: bytes, hashed: bytes) -> bool:
        costs.append(int(hashed.split(b"$")[2]))
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording)
    assert not await auth.check(basic("ghost", PASSWORD))
    assert costs == [cost], "an unknown user must be checked against a hash of the same cost"

    async def median(user: str) -> float:
        times = []
        for _ in range(7):
            start = time.perf_counter()
            assert not await auth.check(basic(user, "wrong password"))
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    known, unknown = await median("p"), await median("ghost")
    # Same work on both paths: the medians agree within a factor that a loaded machine
    # cannot blur, while an early answer would be over 100 times faster.
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_parse_basic() -> None:
    assert parse_basic(basic("u", "p:w")) == ("u", "p:w")
    for header in (None, "", "Basic", "Basic ===", "Digest abc", "Basic dXNlcg=="):
        assert parse_basic(header) is None


@pytest.mark.parametrize(
    "text,path,fragment",
    [
        ("tls_server_config:\n  cert_file: a.crt\n", "tls_server_config.key_file", "set both"),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
            "tls_server_config.cert_file",
            "cannot read",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: ca.crt\n",
            "tls_server_config.cert_file",
            "cannot load",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_ca_file",
            "needs client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: Sometimes\n",
            "tls_server_config.client_auth_type",
            "NoClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_ca_file: ca.crt\n",
            "tls_server_config.client_auth_type",
            "not checked",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  min_version: TLS13\n  max_version: TLS12\n",
            "tls_server_config.min_version",
            "above max_version",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  curve_preferences: [X25519]\n",
            "tls_server_config.curve_preferences",
            "exporter-toolkit v0.14",
        ),
        (
            "tls_server_config:\n  cert: '-----BEGIN CERTIFICATE-----'\n",
            "tls_server_config.cert",
            "use cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "tls_server_config.cipher_suites",
            "insecure cipher suite",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites",
            "TLS 1.3 suites only",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_allowed_sans: [prometheus.example.com]\n",
            "tls_server_config.client_allowed_sans",
            "RequireAndVerifyClientCert",
        ),
        ("rate_limit:\n  interval: 1s\n", "rate_limit.burst", "at least 1"),
        ("rate_limit:\n  interval: soon\n  burst: 2\n", "rate_limit.interval", "duration"),
        ("tls_server_config:\n  cert_fil: x\n", "tls_server_config.cert_fil", "unknown key"),
        ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users.alice", "not a bcrypt"),
        ("basic_auth_user:\n  alice: x\n", "basic_auth_user", "unknown key"),
        (
            "http_server_config:\n  headers:\n    Server: nginx\n",
            "http_server_config.headers",
            "cannot be set",
        ),
        ("tls_server_config: [\n", "", "line 2"),
        ("- a\n- b\n", "", "must be a mapping"),
    ],
)
def test_web_config_errors_name_their_dotted_path(
    certs: Certs, tmp_path: Path, text: str, path: str, fragment: str
) -> None:
    web = write(tmp_path / "web.yml", text)
    with pytest.raises(ConfigError) as err:
        load_web_config(web)
    problems = err.value.problems
    assert any(p == path and fragment in m for p, m in problems), problems
    assert "hunter2" not in str(err.value)


def test_check_config_and_serve_exit_2_on_a_bad_web_config(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yml", "postgres:\n  - name: a\n    dsn: postgresql:///x\n")
    web = write(tmp_path / "web.yml", "basic_auth_users:\n  alice: hunter2\n")
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(cfg), "--web.config.file", str(web)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "basic_auth_users.alice: not a bcrypt hash" in done.stderr
    assert "hunter2" not in done.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config",
            str(cfg),
            "--web.config.file",
            str(web),
            "--web.listen-address",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "basic_auth_users.alice" in done.stderr and "listening" not in done.stderr
    good = write(tmp_path / "good.yml", f"basic_auth_users:\n  alice: '{HASH}'\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "check-config",
            str(cfg),
            "--web.config.file",
            str(good),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "basic auth on" in done.stdout


async def test_wrong_password_flood_gets_503_not_a_queue(web_exporter, tmp_path: Path) -> None:
    """100 clients with a wrong password (bcrypt cost 12) at once: beyond the bounded
    queue they get 503 with Retry-After immediately, and a good scrape sent during the
    flood is answered (200 or 503) in about a second instead of after the whole queue."""
    slow_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{slow_hash}'\n")
    exp = await web_exporter(web)
    base = f"http://127.0.0.1:{exp.port}"
    limit = BasicAuth.CONCURRENCY + BasicAuth.QUEUE

    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), connector=aiohttp.TCPConnector(limit=0)
    ) as session:

        async def get(auth: str) -> tuple[int, str | None, float]:
            start = time.monotonic()
            async with session.get(base + "/metrics", headers={"Authorization": auth}) as r:
                await r.read()
                return r.status, r.headers.get("Retry-After"), time.monotonic() - start

        flood = [asyncio.create_task(get(basic("prometheus", f"wrong{i}"))) for i in range(100)]
        await asyncio.sleep(0.3)
        good_status, _, good_took = await get(basic("prometheus", PASSWORD))
        results = await asyncio.gather(*flood)
        busy = [r for r in results if r[0] == 503]
        assert all(r[0] in (401, 503) for r in results)
        assert len(busy) >= 100 - limit - 1, [r[0] for r in results]
        assert all(r[1] == "1" for r in busy)
        assert max(r[2] for r in busy) < 2.0
        assert good_status in (200, 503)
        # At most a full queue ahead of it at cost 12 on two threads, never the flood.
        assert good_took < 5.0, good_took
        # Once the flood is over, the good credentials get in.
        assert (await get(basic("prometheus", PASSWORD)))[0] == 200


# --- exporter-toolkit keys beyond TLS basics, and reloading without a restart -----------------


def served_cert(port: int, ca: trustme.CA) -> dict[str, Any]:
    """The certificate a fresh TLS connection to the exporter is given (verified)."""
    import socket

    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cert = tls.getpeercert()
    assert cert is not None
    return cert


def web_reload_ok(body: bytes) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    name = "sparki_exporter_web_config_last_reload_successful"
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no {name}")


def common_name(cert: dict[str, Any]) -> str:
    return next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")


def issue(ca: trustme.CA, directory: Path, name: str) -> None:
    """Write a new server certificate and key the way cert-manager or certbot do: each
    file replaced atomically (a rename), the certificate first."""
    leaf = ca.issue_cert("127.0.0.1", "localhost", common_name=name)
    for filename, blob in (
        ("server.crt", leaf.cert_chain_pems[0]),
        ("server.key", leaf.private_key_pem),
    ):
        blob.write_to_path(str(directory / (filename + ".new")))
        (directory / (filename + ".new")).replace(directory / filename)


async def test_a_rotated_certificate_is_served_without_a_restart(
    certs: Certs, web_exporter, tmp_path: Path
) -> None:
    """cert-manager renews the certificate on disk: new connections get the new one within
    a few polls, the old connection pool keeps working, nothing restarts; a broken file
    keeps the last good certificate in force and says so in a metric."""
    issue(certs.ca, tmp_path, "first")
    web = write(
        tmp_path / "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    Exporter.WEB_CONFIG_POLL_SECONDS = 0.2
    try:
        exp = await web_exporter(web)
    finally:
        Exporter.WEB_CONFIG_POLL_SECONDS = 5.0
    assert common_name(await asyncio.to_thread(served_cert, exp.port, certs.ca)) == "first"

    issue(certs.ca, tmp_path, "second")

    async def serving(name: str) -> None:
        for _ in range(100):
            if common_name(await asyncio.to_thread(served_cert, exp.port, certs.ca)) == name:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"still not serving {name!r}")

    await serving("second")
    base = f"https://127.0.0.1:{exp.port}"
    status, _, body = await fetch(base + "/metrics", certs.client_context())
    assert status == 200
    assert web_reload_ok(body) == 1

    # A key that is not PEM: refused, the second certificate stays in force.
    (tmp_path / "server.key").write_text("not a key\n")
    for _ in range(100):
        if exp.web.web_reload_success is False:
            break
        await asyncio.sleep(0.1)
    assert exp.web.web_reload_success is False
    assert common_name(await asyncio.to_thread(served_cert, exp.port, certs.ca)) == "second"
    status, _, body = await fetch(base + "/metrics", certs.client_context())
    assert web_reload_ok(body) == 0

    # Fixed: in force again, and the metric recovers.
    issue(certs.ca, tmp_path, "third")
    await serving("third")
    assert exp.web.web_reload_success is True


async def test_reload_swaps_the_client_ca_and_refuses_turning_tls_off(
    certs: Certs, web_exporter, tmp_path: Path
) -> None:
    """A new client CA replaces the old one (the old CA's clients are refused, not just
    the new ones added), and a web config without TLS is refused while TLS listens."""
    web = write(
        tmp_path / "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n",
    )
    exp = await web_exporter(web)
    exp.WEB_CONFIG_POLL_SECONDS = 3600.0  # only explicit reloads in this test
    base = f"https://127.0.0.1:{exp.port}"
    assert (await fetch(base + "/healthz", certs.client_context("client.pem")))[0] == 200
    with pytest.raises(aiohttp.ClientError):
        await fetch(base + "/healthz", certs.client_context("stranger.pem"))

    # The stranger's CA becomes the client CA, inline this time (client_ca).
    stranger_ca = trustme.CA()
    stranger_ca.issue_cert("mallory@example.com").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "stranger.pem")
    )
    ca_pem = stranger_ca.cert_pem.bytes().decode().replace("\n", "\n    ")
    write(
        web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca: |\n    {ca_pem}\n",
    )
    ok, problems = await exp.reload_all()  # what SIGHUP and /-/reload run
    assert ok, problems
    assert (await fetch(base + "/healthz", certs.client_context("stranger.pem")))[0] == 200
    with pytest.raises(aiohttp.ClientError):
        await fetch(base + "/healthz", certs.client_context("client.pem"))

    write(web, "basic_auth_users: {}\n")
    ok, problems = await exp.reload_all()
    assert not ok and any("needs a restart" in p for p in problems), problems
    assert exp.web.web_reload_success is False
    assert (await fetch(base + "/healthz", certs.client_context("stranger.pem")))[0] == 200


async def test_client_allowed_sans_admit_only_listed_certificates(
    certs: Certs, web_exporter, tmp_path: Path
) -> None:
    other = certs.client_ca.issue_cert("grafana@example.com")
    other.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "other.pem"))
    web = write(
        tmp_path / "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n"
        "  client_allowed_sans: [prometheus@example.com]\n",
    )
    exp = await web_exporter(web)
    base = f"https://127.0.0.1:{exp.port}"
    status, _, body = await fetch(base + "/metrics", certs.client_context("client.pem"))
    assert status == 200 and b"sparki_up" in body
    # Same trusted CA, another name: verified, but not allowed.
    status, headers, body = await fetch(base + "/metrics", certs.client_context("other.pem"))
    assert status == 403 and b"sparki_up" not in body
    assert headers.get("Connection", "").lower() == "close"


async def test_cipher_suites_limit_tls12_handshakes(
    certs: Certs, web_exporter, tmp_path: Path
) -> None:
    web = write(
        tmp_path / "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  max_version: TLS12\n"
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n",
    )
    exp = await web_exporter(web)
    base = f"https://127.0.0.1:{exp.port}"
    # trustme issues ECDSA certificates: an RSA-only suite leaves no common cipher.
    with pytest.raises(aiohttp.ClientError):
        await fetch(base + "/healthz", certs.client_context())
    write(
        web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  max_version: TLS12\n"
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n",
    )
    ok, problems = await exp.reload_web()
    assert ok, problems
    assert (await fetch(base + "/healthz", certs.client_context()))[0] == 200

    def negotiated() -> str:
        import socket

        with (
            socket.create_connection(("127.0.0.1", exp.port), timeout=10) as raw,
            certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            cipher = tls.cipher()
        assert cipher is not None
        return cipher[0]

    assert await asyncio.to_thread(negotiated) == "ECDHE-ECDSA-AES256-GCM-SHA384"


async def test_rate_limit_answers_429_beyond_the_burst(web_exporter, tmp_path: Path) -> None:
    web = write(tmp_path / "web.yml", "rate_limit:\n  interval: 10s\n  burst: 3\n")
    exp = await web_exporter(web)
    base = f"http://127.0.0.1:{exp.port}"
    statuses = []
    for _ in range(5):
        status, headers, _ = await fetch(base + "/healthz")
        statuses.append((status, headers.get("Retry-After")))
    assert [s for s, _ in statuses] == [200, 200, 200, 429, 429], statuses
    assert 1 <= int(statuses[3][1] or 0) <= 10
    # Docker's HEALTHCHECK still sees a live server while the bucket is empty.
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "exporter",
            "healthcheck",
            "--web.listen-address",
            f"127.0.0.1:{exp.port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (await fetch(base + "/healthz"))[0] == 429
    # A reload that lifts the limit applies to the next request.
    write(web, "rate_limit:\n  interval: 0\n")
    ok, problems = await exp.reload_web()
    assert ok, problems
    assert (await fetch(base + "/healthz"))[0] == 200


def test_sighup_reloads_the_web_config(tmp_path: Path, pg_primary: PgCluster) -> None:
    """In a real process: SIGHUP puts a new basic-auth user in force. The file is
    rewritten in place with its size and mtime kept, so the file watcher cannot be what
    saw the change."""
    import os

    from test_reload import Process, pg_target

    other_password = "another correct horse"
    other = bcrypt.hashpw(other_password.encode(), bcrypt.gensalt(4)).decode()
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    before = web.stat()
    config = "poll_interval: 30s\npostgres:\n" + pg_target(pg_primary, "w")
    p = Process(tmp_path, config, "--web.config.file", str(web))
    try:
        url = f"http://127.0.0.1:{p.port}/healthz"

        def status(password: str) -> int:
            import urllib.error
            import urllib.request

            request = urllib.request.Request(
                url, headers={"Authorization": basic("prometheus", password)}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    return resp.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert p.wait(lambda: status(PASSWORD) == 200)
        with web.open("r+") as f:  # same inode, same size
            f.write(f"basic_auth_users:\n  prometheus: '{other}'\n")
        os.utime(web, ns=(before.st_atime_ns, before.st_mtime_ns))
        time.sleep(6)  # more than a watcher poll: it saw nothing
        assert status(PASSWORD) == 200
        p.proc.send_signal(__import__("signal").SIGHUP)
        assert p.wait(lambda: status(other_password) == 200)
        assert status(PASSWORD) == 401
        assert "web config reloaded" in p.log.read_text()
    finally:
        p.stop()


def test_every_web_config_problem_in_one_run(tmp_path: Path) -> None:
    """A refused TLS key, a bad value beside it, problems in every other section and
    misspelt keys: all reported at once, with the nearest key for the misspelt ones."""
    web = write(
        tmp_path / "web.yml",
        "tls_server_config:\n  cert_file: a.crt\n  curve_preferences: [X25519]\n"
        "  min_version: TLS14\n"
        "basic_auth_users:\n  alice: hunter2\n"
        "rate_limit: {interval: 1s}\n"
        "http_server_config: {headers: {Server: x}, htp2: true}\n"
        "basic_auth_user: {}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_web_config(web)
    found = dict(err.value.problems)
    assert set(found) == {
        "basic_auth_user",
        "tls_server_config.curve_preferences",
        "tls_server_config.min_version",
        "http_server_config.headers",
        "http_server_config.htp2",
        "basic_auth_users.alice",
        "rate_limit.burst",
    }, err.value.problems
    assert found["basic_auth_user"] == "unknown key; did you mean basic_auth_users?"
    assert found["http_server_config.htp2"] == "unknown key; did you mean http2?"
    assert found["tls_server_config.min_version"] == "must be one of TLS10, TLS11, TLS12, TLS13"
    assert "exporter-toolkit v0.14" in found["tls_server_config.curve_preferences"]
    assert "hunter2" not in str(err.value)
