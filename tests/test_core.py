"""Core behaviour: endpoints, formats, readiness, the landing page, shutdown."""

from __future__ import annotations

import gzip
import math
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from fixtures_core import free_port, wait_until
from fixtures_pg import PgCluster
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from devstack.exporter import exporter_argv
from exporter.metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramState,
    format_value,
    merge_exposition,
    render_families,
)

FAST = {"poll_interval": "1s", "poll_timeout": "0.8s"}


async def test_endpoints_and_formats(pg_primary: PgCluster, start_exporter) -> None:
    exp = await start_exporter(
        {**FAST, "postgres": [pg_primary.target("a"), pg_primary.target("b")]}
    )
    await exp.polls("postgres", "a", 1)
    await exp.polls("postgres", "b", 1)

    status, headers, body = await exp.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    # Two targets share families: each HELP/TYPE appears once, samples stay together.
    assert text.count("# TYPE sparki_postgres_max_connections gauge") == 1
    names = [f.name for f in text_string_to_metric_families(text)]
    assert len(names) == len(set(names))

    status, headers, body = await exp.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    fams = {f.name: f for f in om_parse(body.decode())}
    assert fams["sparki_postgres_transactions"].type == "counter"
    assert fams["sparki_postgres_statement_duration_seconds"].type == "histogram"

    async with exp.session.get(
        exp.url + "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    ) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Encoding"] == "gzip"
    assert b"sparki_up" in gzip.decompress(raw)
    # One gzip member, as browsers and curl need: a single decoder reads it to the end.
    for accept, tail in (("text/plain", b"\n"), ("application/openmetrics-text", b"# EOF\n")):
        async with exp.session.get(
            exp.url + "/metrics",
            headers={"Accept-Encoding": "gzip", "Accept": accept},
            auto_decompress=False,
        ) as resp:
            raw = await resp.read()
        decoder = zlib.decompressobj(wbits=31)
        plain = decoder.decompress(raw)
        assert decoder.eof and decoder.unused_data == b"", "more than one gzip member"
        assert plain.endswith(tail) and b"sparki_postgres_max_connections{" in plain

    assert (await exp.get("/healthz"))[0] == 200
    assert (await exp.get("/readyz"))[0] == 200
    status, headers, page = await exp.get("/")
    assert status == 200 and "text/html" in headers["Content-Type"]
    assert b">a<" in page and b">b<" in page and b">up<" in page
    assert (await exp.get("/nope"))[0] == 404


async def test_readyz_waits_for_the_first_poll_of_every_target(
    pg_primary: PgCluster, hung_server, start_exporter
) -> None:
    exp = await start_exporter(
        {
            "poll_interval": "10s",
            "poll_timeout": "3s",
            "postgres": [
                pg_primary.target("ok"),
                {"name": "slow", "dsn": f"postgresql://x@127.0.0.1:{hung_server.port}/postgres"},
            ],
        }
    )
    status, _, body = await exp.get("/readyz")
    assert status == 503 and b"postgres/slow" in body
    # Metrics are served meanwhile, without waiting for the hung target.
    start = time.monotonic()
    assert (await exp.get("/metrics"))[0] == 200
    assert time.monotonic() - start < 0.5

    async def ready() -> bool:
        return (await exp.get("/readyz"))[0] == 200

    await exp.wait_for(ready, timeout=10)
    page = (await exp.get("/"))[2].decode()
    assert "down" in page and "timeout" in page and "did not finish within 3s" in page


async def test_landing_page_escapes_error_text(pg_primary: PgCluster, start_exporter) -> None:
    exp = await start_exporter(
        {
            **FAST,
            "postgres": [
                {
                    "name": "x",
                    "dsn": f"host=127.0.0.1 port={pg_primary.port} user=postgres "
                    "dbname='<script>alert(1)</script>'",
                }
            ],
        }
    )
    await exp.polls("postgres", "x", 1)
    page = (await exp.get("/"))[2].decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the server's error, escaped
    assert "<script>" not in page


def test_sigterm_stops_cleanly_and_closes_connections(
    pg_primary: PgCluster, tmp_path: Path
) -> None:
    pg_primary.ensure_monitor_role()
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        f"poll_interval: 1s\npoll_timeout: 800ms\npostgres:\n"
        f"  - name: p\n    dsn: {pg_primary.dsn(user='sparki_monitor')}\n"
        f"    application_name: sigterm-test\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        exporter_argv(cfg, port, "--log.format", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import urllib.request

        def ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                return r.status == 200

        wait_until(ready, 20, retry_on=(OSError,), what="/readyz 200")
        count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sigterm-test'"
        assert pg_primary.sql(count)[0][0] == 1
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - start < 5
        assert proc.returncode == 0
        assert "Traceback" not in err
        assert '"msg": "stopped"' in err
        for line in err.strip().splitlines():  # JSON logs: one object per line
            assert line.startswith("{") and line.endswith("}")
        wait_until(lambda: pg_primary.sql(count)[0][0] == 0, 5, what="connection closed")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_listen_address_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--web.listen-address", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PG_HOST": "127.0.0.1"},
    )
    assert result.returncode == 2 and "--web.listen-address" in result.stderr


# --- rendering -------------------------------------------------------------------------


def test_rendering_matches_client_python_parsers() -> None:
    g = GaugeMetricFamily("t_gauge", "help with \\ and\nnewline", labels=["l"])
    g.add_metric(['va"l\\ue\n'], 1.5)
    g.add_metric(["inf"], math.inf)
    c = CounterMetricFamily("t_count", "c", labels=["l"])
    c.add_metric(["x"], 3)
    h = HistogramState((0.1, 1.0))
    for v in (0.05, 0.5, 5):
        h.observe(v)
    from exporter.metrics import histogram_family

    hf = histogram_family("t_seconds", "h", ["l"], [(["x"], h.snapshot())])
    rendered = render_families([g, c, hf])
    text = merge_exposition([rendered], openmetrics=False).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["t_gauge"].samples[0].labels["l"] == 'va"l\\ue\n'
    assert fams["t_gauge"].samples[1].value == math.inf
    assert fams["t_count"].samples[0].value == 3
    buckets = [s.value for s in fams["t_seconds"].samples if s.name.endswith("_bucket")]
    assert buckets == [1, 2, 3]
    om = merge_exposition([rendered], openmetrics=True).decode()
    om_fams = {f.name: f for f in om_parse(om)}
    assert om_fams["t_count"].samples[0].value == 3


def test_histogram_rejects_bogus_observations() -> None:
    h = HistogramState((0.05, 0.1))
    assert not h.observe(-0.01)
    assert not h.observe(math.nan)
    assert not h.observe(0.06, count=0)
    assert h.observe(0.1)  # le is inclusive
    assert h.snapshot().buckets() == [("0.05", 0), ("0.1", 1), ("+Inf", 1)]
    with pytest.raises(ValueError):
        HistogramState((0.1, 0.05))


@pytest.mark.parametrize(
    "value,text",
    [(1.0, "1"), (0.25, "0.25"), (1e20, "1e+20"), (-math.inf, "-Inf"), (math.nan, "NaN")],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text


async def test_gzip_negotiation_respects_q0(pg_primary: PgCluster, start_exporter) -> None:
    exp = await start_exporter({**FAST, "postgres": [pg_primary.target("q")]})
    async with exp.session.get(
        exp.url + "/metrics",
        headers={"Accept-Encoding": "gzip;q=0, identity"},
        auto_decompress=False,
    ) as resp:
        assert "Content-Encoding" not in resp.headers
        body = await resp.read()
    assert body.startswith(b"# HELP "), body[:20]  # plain text, not gzip bytes


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=30000))
def test_gzip_join_is_one_member_of_prefix_and_tail(prefix: bytes, tail: bytes) -> None:
    """The cached-tail gzip must decode, with any decoder, to exactly prefix + tail."""
    from exporter.exposition import deflate_final, gzip_join

    raw = gzip_join(prefix, tail, deflate_final(tail))
    decoder = zlib.decompressobj(wbits=31)
    assert decoder.decompress(raw) == prefix + tail
    assert decoder.eof and decoder.unused_data == b""
    assert gzip.decompress(raw) == prefix + tail
