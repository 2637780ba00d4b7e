"""The NATS adapter against private nats-server processes (JetStream on)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import nats
import pytest
from fixtures_nats import NatsServer

from devstack.redis import TlsFiles
from exporter.adapter import Reason

pytestmark = pytest.mark.asyncio


def cfg(*targets: dict[str, Any]) -> dict[str, Any]:
    return {"poll_interval": "1s", "poll_timeout": "0.8s", "nats": list(targets)}


async def test_unacked_pull_consumer_shows_pending_and_ack_pending(
    nats_server: NatsServer, start_exporter: Any
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="BUILDLOGS", subjects=["logs.>"])
    for _ in range(10):
        await js.publish("logs.b1", b"line")
    sub = await js.pull_subscribe("logs.>", "indexer")
    await sub.fetch(4)  # delivered, never acked
    exp = await start_exporter(cfg(nats_server.target("n")))
    try:
        labels = {"target": "n", "stream": "BUILDLOGS", "consumer": "indexer"}
        await exp.wait_value("sparki_nats_consumer_pending_messages", 6.0, **labels)
        assert await exp.value("sparki_nats_consumer_ack_pending_messages", **labels) == 4.0
        assert await exp.value("sparki_nats_consumer_behind_messages", **labels) == 6.0
        for _ in range(5):
            await js.publish("logs.b1", b"line")
        await exp.wait_value("sparki_nats_consumer_pending_messages", 11.0, **labels)
        assert await exp.value("sparki_nats_jetstream_healthy", target="n") == 1.0
        assert await exp.value("sparki_up", adapter="nats", target="n") == 1.0
        count = await exp.value("sparki_nats_canary_duration_seconds_count", target="n")
        assert count is not None and count >= 1
    finally:
        await js.delete_stream("BUILDLOGS")
        await nc.close()


async def test_stream_filled_towards_max_bytes(
    nats_server: NatsServer, start_exporter: Any
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="CACHE", subjects=["cache.>"], max_bytes=20000)
    for _ in range(90):
        await js.publish("cache.x", b"x" * 150)
    exp = await start_exporter(cfg(nats_server.target("n")))
    try:
        await exp.wait_for(lambda: exp.value("sparki_nats_stream_max_bytes", stream="CACHE"))
        used = await exp.value("sparki_nats_stream_bytes", stream="CACHE")
        limit = await exp.value("sparki_nats_stream_max_bytes", stream="CACHE")
        assert limit == 20000.0
        assert used is not None and 0.8 < used / limit <= 1.0
    finally:
        await js.delete_stream("CACHE")
        await nc.close()


async def test_stopped_server_reads_down_with_reason_connect_and_recovers(
    nats_factory: Any, start_exporter: Any
) -> None:
    server = nats_factory()
    exp = await start_exporter(cfg(server.target("n")))
    await exp.wait_value("sparki_up", 1.0, adapter="nats", target="n")
    server.stop()
    await exp.polls("nats", "n", 2)
    assert await exp.value("sparki_up", adapter="nats", target="n") == 0.0
    reason = await exp.samples("sparki_last_poll_error_reason", adapter="nats", target="n")
    assert [s.labels["reason"] for s in reason if s.value == 1] == ["connect"]
    server.start()
    await exp.wait_value("sparki_up", 1.0, timeout=20, adapter="nats", target="n")


async def test_wrong_token_reads_auth_and_never_shows_the_token(
    nats_token: NatsServer, start_exporter: Any
) -> None:
    wrong = {**nats_token.target("n"), "token": "not-the-token-93af"}
    exp = await start_exporter(cfg(wrong))
    await exp.polls("nats", "n", 2)
    assert await exp.value("sparki_up", adapter="nats", target="n") == 0.0
    reason = await exp.samples("sparki_last_poll_error_reason", adapter="nats", target="n")
    assert [s.labels["reason"] for s in reason if s.value == 1] == ["auth"]
    text = await exp.scrape()
    assert "not-the-token" not in text and nats_token.token not in text  # type: ignore[operator]


async def test_user_password_server_accepts_the_right_secret(
    nats_factory: Any, start_exporter: Any
) -> None:
    server = nats_factory(user="sparki", password="s3cret-pw-1")
    bad = {**server.target("bad"), "password": "wrong-pw-2"}
    exp = await start_exporter(cfg(server.target("good"), bad))
    await exp.wait_value("sparki_up", 1.0, adapter="nats", target="good")
    await exp.polls("nats", "bad", 2)
    assert await exp.value("sparki_up", adapter="nats", target="bad") == 0.0
    reason = await exp.samples("sparki_last_poll_error_reason", adapter="nats", target="bad")
    assert [s.labels["reason"] for s in reason if s.value == 1] == ["auth"]


async def test_monitoring_port_down_degrades_only_its_collectors(
    nats_server: NatsServer, start_exporter: Any
) -> None:
    from fixtures_core import free_port

    target = {**nats_server.target("n"), "monitor_url": f"http://127.0.0.1:{free_port()}"}
    exp = await start_exporter(cfg(target))
    await exp.wait_value(
        "sparki_collector_success", 0.0, adapter="nats", target="n", collector="varz"
    )
    assert await exp.value("sparki_up", adapter="nats", target="n") == 1.0
    assert (
        await exp.value("sparki_collector_success", adapter="nats", target="n", collector="canary")
        == 1.0
    )


async def test_a_subscriber_that_never_reads_moves_the_slow_consumer_counter(
    nats_factory: Any, start_exporter: Any
) -> None:
    # The server allows 64 KiB queued per client (payloads up to 32 KiB) and waits
    # 100 ms on a blocked write; a raw TCP subscriber that never reads its socket is a
    # slow consumer within that.
    server = nats_factory(
        config='max_pending: 65536\nmax_payload: 32768\nwrite_deadline: "100ms"\n'
    )
    exp = await start_exporter(cfg(server.target("n")))
    await exp.wait_value("sparki_nats_slow_consumers_total", 0.0, target="n")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false}\r\nSUB flood 1\r\nPING\r\n')
    await writer.drain()
    nc = await nats.connect(server.url)
    try:
        payload = b"x" * 30000
        for _ in range(400):
            await nc.publish("flood", payload)
        await nc.flush()

        async def moved() -> bool:
            value = await exp.value("sparki_nats_slow_consumers_total", target="n")
            return value is not None and value >= 1

        await exp.wait_for(moved, 15)
        assert await exp.value("sparki_up", adapter="nats", target="n") == 1.0
    finally:
        writer.close()
        await nc.close()


async def test_consumer_names_are_capped_and_the_rest_summed_as_other(
    nats_server: NatsServer, start_exporter: Any
) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name="WIDE", subjects=["wide.>"])
    for _ in range(5):
        await js.publish("wide.a", b"m")
    for i in range(6):
        await js.pull_subscribe("wide.>", f"worker{i}")
    exp = await start_exporter(cfg({**nats_server.target("n"), "top_consumers": 2}))
    try:
        await exp.wait_for(
            lambda: exp.value("sparki_nats_consumer_pending_messages", consumer="other")
        )
        rows = await exp.samples("sparki_nats_consumer_pending_messages", target="n", stream="WIDE")
        names = sorted(s.labels["consumer"] for s in rows)
        assert len(names) == 3 and "other" in names, names
        other = next(s.value for s in rows if s.labels["consumer"] == "other")
        assert other == 4 * 5.0  # four consumers summed, five pending each
    finally:
        await js.delete_stream("WIDE")
        await nc.close()


async def test_a_client_that_never_reads_shows_its_pending_bytes_under_a_safe_name(
    nats_factory: Any, start_exporter: Any
) -> None:
    # A 60 s write deadline keeps the blocked client connected (the default, 10 s, would
    # cut it off as a slow consumer while the test looks at its pending bytes).
    server = nats_factory(config='write_deadline: "60s"\n')
    exp = await start_exporter(cfg({**server.target("n"), "top_clients": 1}))
    await exp.wait_value("sparki_nats_client_pending_bytes", 0.0, target="n", client="other")
    # Client names are user input: newlines, quotes and braces must not reach a label.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await reader.readline()  # INFO
    writer.write(
        b'CONNECT {"verbose":false,"name":"stuck \\"reader\\"\\n{x}"}\r\nSUB flood 1\r\nPING\r\n'
    )
    await writer.drain()
    nc = await nats.connect(server.url, name="quiet-one")
    await nc.subscribe("flood")  # a reading subscriber: no pending bytes, no series
    try:
        for _ in range(400):
            await nc.publish("flood", b"x" * 30000)
        await nc.flush()

        async def backed_up() -> bool:
            value = await exp.value("sparki_nats_client_pending_bytes", client="stuck_reader_x")
            return value is not None and value > 1_000_000

        await exp.wait_for(backed_up, 15)
        rows = await exp.samples("sparki_nats_client_pending_bytes", target="n")
        assert sorted(s.labels["client"] for s in rows) == ["other", "stuck_reader_x"]
        total = await exp.value("sparki_nats_pending_bytes", target="n")
        stuck = await exp.value("sparki_nats_client_pending_bytes", client="stuck_reader_x")
        assert total is not None and stuck is not None and total >= stuck
        assert await exp.value("sparki_nats_client_connections", target="n") == 3.0
        assert (
            await exp.value("sparki_nats_closed_connections_total", target="n", reason="auth")
            == 0.0
        )
    finally:
        writer.close()
        await nc.close()


async def test_a_client_cut_off_as_slow_consumer_counts_as_a_slow_consumer_closure(
    nats_factory: Any, start_exporter: Any
) -> None:
    server = nats_factory(config='write_deadline: "200ms"\n')
    exp = await start_exporter(cfg(server.target("n")))
    labels = {"target": "n", "reason": "slow_consumer"}
    await exp.wait_value("sparki_nats_closed_connections_total", 0.0, **labels)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await reader.readline()  # INFO
    writer.write(b'CONNECT {"verbose":false}\r\nSUB flood 1\r\nPING\r\n')
    await writer.drain()
    nc = await nats.connect(server.url)
    try:
        for _ in range(400):
            await nc.publish("flood", b"x" * 30000)
        await nc.flush()
        await exp.wait_value("sparki_nats_closed_connections_total", 1.0, timeout=15, **labels)
        await nc.close()
        await exp.wait_value(
            "sparki_nats_closed_connections_total", 1.0, target="n", reason="client_closed"
        )
        assert await exp.value("sparki_nats_closed_connections_total", **labels) == 1.0
    finally:
        writer.close()
        await nc.close()


async def test_tls_with_a_private_ca_and_client_certificates(
    nats_factory: Any, start_exporter: Any, tmp_path: Path
) -> None:
    """Client port and https monitoring verified against tls_ca_file, with a client
    certificate (the server requires one); a wrong CA or a missing certificate reads
    down with a message that says TLS, and no key material shows anywhere."""
    tls = TlsFiles(tmp_path / "tls")
    server = nats_factory(tls=tls, verify_clients=True)
    good = {
        **server.target("good"),
        "tls_ca_file": str(tls.ca_file),
        "tls_cert_file": str(tls.client_cert),
        "tls_key_file": str(tls.client_key),
        "tls_server_name": "localhost",
    }
    wrong_ca = {**good, "name": "wrong-ca", "tls_ca_file": str(tls.wrong_ca_file)}
    no_cert = {**server.target("no-cert"), "tls_ca_file": str(tls.ca_file)}
    exp = await start_exporter(cfg(good, wrong_ca, no_cert))
    await exp.wait_value("sparki_up", 1.0, adapter="nats", target="good")
    await exp.wait_value(
        "sparki_collector_success", 1.0, adapter="nats", target="good", collector="varz"
    )
    assert await exp.value("sparki_nats_jetstream_healthy", target="good") == 1.0
    for name in ("wrong-ca", "no-cert"):
        await exp.polls("nats", name, 1)
        assert await exp.value("sparki_up", adapter="nats", target=name) == 0.0
        state = exp.runner("nats", name).state
        assert state.last_reason == Reason.CONNECT, (name, state.last_error)
        if name == "wrong-ca":
            assert "TLS handshake failed" in state.last_error, state.last_error
    key = tls.client_key.read_text().splitlines()[1]
    text = await exp.scrape()
    assert key not in text and "BEGIN" not in text


async def test_tls_settings_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    from exporter.adapters.nats.config import NatsConfig

    tls = TlsFiles(tmp_path / "tls")
    base = {"name": "n", "url": "tls://127.0.0.1:4222"}
    with pytest.raises(ValueError, match="tls_ca_file"):
        NatsConfig(**base, tls_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="tls_cert_file and tls_key_file"):
        NatsConfig(**base, tls_cert_file=str(tls.client_cert))
    with pytest.raises(ValueError, match="cannot be loaded"):
        NatsConfig(**base, tls_cert_file=str(tls.client_cert), tls_key_file=str(tls.ca_file))


async def test_a_stream_or_consumer_deleted_while_running_leaves_no_stale_series(
    nats_factory: Any, start_exporter: Any
) -> None:
    """Streams and consumers are read afresh from /jsz each poll: once one is deleted,
    none of its series (a limit an alert divides by, a pending count an alert watches)
    stays behind at its last value, the target stays up, and a stream re-created under
    the same name starts from its new state."""
    server = nats_factory()
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"], max_bytes=1_000_000)
    await js.add_stream(name="AUDIT", subjects=["audit.>"])
    for _ in range(20):
        await js.publish("orders.new", b"order")
        await js.publish("audit.x", b"entry")
    await js.add_consumer("ORDERS", durable_name="billing", ack_policy="explicit")
    for name in ("reader", "archiver"):
        await js.add_consumer("AUDIT", durable_name=name, ack_policy="explicit")
    exp = await start_exporter(cfg(server.target("n")))
    try:
        pending = "sparki_nats_consumer_pending_messages"
        await exp.wait_value(pending, 20.0, target="n", stream="ORDERS", consumer="billing")
        await exp.wait_value(pending, 20.0, target="n", stream="AUDIT", consumer="archiver")
        assert await exp.value("sparki_nats_stream_max_bytes", stream="ORDERS") == 1_000_000

        # A consumer deleted alone: its series go, its stream and sibling stay.
        await js.delete_consumer("AUDIT", "reader")
        await exp.polls("nats", "n", 2)
        text = await exp.scrape()
        assert 'consumer="reader"' not in text
        assert await exp.value("sparki_nats_stream_consumers", stream="AUDIT") == 1.0
        assert await exp.value(pending, stream="AUDIT", consumer="archiver") == 20.0

        # The stream deleted with its consumer: every series naming it goes at once.
        await js.delete_stream("ORDERS")
        await exp.polls("nats", "n", 2)
        text = await exp.scrape()
        assert 'stream="ORDERS"' not in text, [
            line for line in text.splitlines() if "ORDERS" in line
        ]
        assert await exp.value("sparki_nats_stream_messages", stream="AUDIT") == 20.0
        assert await exp.value("sparki_up", adapter="nats", target="n") == 1.0
        assert await exp.value("sparki_nats_jetstream_healthy", target="n") == 1.0
        assert (
            await exp.value(
                "sparki_collector_success", adapter="nats", target="n", collector="jetstream"
            )
            == 1.0
        )

        # Re-created under the same name, without a limit and with fewer messages:
        # nothing of the old stream shows through.
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        for _ in range(3):
            await js.publish("orders.new", b"order")
        await exp.wait_value("sparki_nats_stream_messages", 3.0, target="n", stream="ORDERS")
        assert await exp.value("sparki_nats_stream_consumers", stream="ORDERS") == 0.0
        assert await exp.samples("sparki_nats_stream_max_bytes", stream="ORDERS") == []
        assert await exp.samples(pending, stream="ORDERS") == []
        await js.add_consumer("ORDERS", durable_name="billing", ack_policy="explicit")
        await exp.wait_value(pending, 3.0, target="n", stream="ORDERS", consumer="billing")
    finally:
        await nc.close()
