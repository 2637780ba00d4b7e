"""/probe?target=NAME: configured targets only, on demand, within the scrape timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fixtures_pg import PgCluster
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families

from exporter.probe import ProbeRequestError, deadline

SLOW = {"poll_interval": "30s", "poll_timeout": "5s"}


def parse(body: bytes) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def values(body: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_probe_returns_only_that_targets_metrics(
    pg_primary: PgCluster, start_exporter
) -> None:
    exp = await start_exporter(
        {**SLOW, "postgres": [pg_primary.target("a"), pg_primary.target("b")]}
    )
    status, headers, body = await exp.get("/probe?target=a")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    fams = parse(body)
    assert values(body, "sparki_up") == {(("adapter", "postgres"), ("target", "a")): 1.0}
    assert "sparki_poll_duration_seconds" in fams
    assert fams["sparki_postgres_max_connections"].samples[0].labels == {"target": "a"}
    assert all(
        s.labels.get("target") in (None, "a") for fam in fams.values() for s in fam.samples
    ), "another target's series in a probe"
    assert "sparki_poll_errors" not in fams  # the runner's counters belong to /metrics

    status, headers, body = await exp.get(
        "/probe?target=b&adapter=postgres",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    om = {f.name: f for f in om_parse(body.decode())}
    assert om["sparki_up"].samples[0].labels["target"] == "b"


BAD_TARGETS = [
    ("target={addr}", "unknown target"),
    ("target=postgresql://x@{addr}/postgres", "unknown target"),
    ("target=redis://{addr}", "unknown target"),
    ("target=http://{addr}/", "unknown target"),
    ("target=nonexistent.invalid", "unknown target"),
    ("target=a&adapter=redis", "unknown target"),
    ("target=", "target is empty"),
    ("", "missing parameter target"),
    ("adapter=postgres", "missing parameter target"),
    ("target=a&target=b", "given 2 times"),
    ("target=a&adapter=postgres&adapter=postgres", "given 2 times"),
    ("target=a&dsn=postgresql://x@{addr}/postgres", "unknown parameter"),
    ("target=a&module=http_2xx", "unknown parameter"),
]


async def test_anything_but_a_configured_name_is_refused_and_connects_nowhere(
    pg_primary: PgCluster, hung_server, start_exporter
) -> None:
    exp = await start_exporter({**SLOW, "postgres": [pg_primary.target("a")]})
    await exp.polls("postgres", "a", 1)
    addr = f"127.0.0.1:{hung_server.port}"
    for query, fragment in BAD_TARGETS:
        status, _, body = await exp.get("/probe?" + query.format(addr=addr))
        assert status == 400, (query, body)
        assert fragment in body.decode(), (query, body)
    status, _, body = await exp.get("/probe?target=nope")
    assert "postgres/a" in body.decode()  # says what is configured
    assert "never connects to an address" in body.decode()
    # Give any stray connection attempt time to land: the listener must see none.
    await asyncio.sleep(1.0)
    assert hung_server.accepted == []


async def test_bad_scrape_timeout_header_is_400(pg_primary: PgCluster, start_exporter) -> None:
    exp = await start_exporter({**SLOW, "postgres": [pg_primary.target("a")]})
    for value in ("abc", "-1", "0", "nan", "inf"):
        status, _, body = await exp.get(
            "/probe?target=a", headers={"X-Prometheus-Scrape-Timeout-Seconds": value}
        )
        assert status == 400 and b"X-Prometheus-Scrape-Timeout-Seconds" in body, value


def test_deadline_is_the_smaller_of_poll_timeout_and_scrape_timeout_less_a_margin() -> None:
    assert deadline(None, 5.0) == 5.0
    assert deadline("10", 5.0) == 5.0
    assert deadline("3", 5.0) == pytest.approx(2.7)
    assert deadline("10", 20.0) == pytest.approx(9.5)
    assert 0 < deadline("0.2", 5.0) < 0.2
    for bad in ("x", "0", "-3", "nan", "inf"):
        with pytest.raises(ProbeRequestError):
            deadline(bad, 5.0)


async def test_probe_of_a_hung_target_answers_within_the_scrape_timeout(
    pg_primary: PgCluster, hung_server, start_exporter
) -> None:
    exp = await start_exporter(
        {
            "poll_interval": "30s",
            "poll_timeout": "20s",
            "postgres": [
                pg_primary.target("ok"),
                {"name": "hung", "dsn": f"postgresql://x@127.0.0.1:{hung_server.port}/postgres"},
            ],
        }
    )
    start = time.monotonic()
    status, _, body = await exp.get(
        "/probe?target=hung", headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"}
    )
    elapsed = time.monotonic() - start
    assert status == 200
    assert elapsed < 3.0 + 2.0, elapsed  # within the scrape timeout (slack for a busy host)
    assert values(body, "sparki_up") == {(("adapter", "postgres"), ("target", "hung")): 0.0}
    reasons = values(body, "sparki_last_poll_error_reason")
    assert reasons == {(("adapter", "postgres"), ("reason", "timeout"), ("target", "hung")): 1.0}
    # The healthy target is unaffected and still probes fine.
    status, _, body = await exp.get("/probe?target=ok")
    assert status == 200 and values(body, "sparki_up")[(("adapter", "postgres"), ("target", "ok"))]


async def test_probes_never_overlap_the_scheduled_poll_nor_change_its_state(
    pg_primary: PgCluster, start_exporter
) -> None:
    pg_primary.ensure_monitor_role()
    exp = await start_exporter(
        {
            "poll_interval": "1s",
            "poll_timeout": "0.9s",
            "postgres": [pg_primary.target("s", application_name="probe-overlap")],
        }
    )
    runner = exp.runner("postgres", "s")
    real_poll = runner.target.poll
    active = 0
    most = 0

    async def counting_poll() -> Any:
        nonlocal active, most
        active += 1
        most = max(most, active)
        try:
            await asyncio.sleep(0.05)  # widen the window an overlap would need
            return await real_poll()
        finally:
            active -= 1

    runner.target.poll = counting_poll
    await exp.polls("postgres", "s", 1)

    async def one() -> int:
        return (await exp.get("/probe?target=s"))[0]

    for _ in range(5):
        statuses = await asyncio.gather(*(one() for _ in range(8)))
        assert statuses == [200] * 8
    await exp.polls("postgres", "s", 2)
    assert most == 1, "two polls used the target's connection at once"
    count = await asyncio.to_thread(
        pg_primary.sql,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'probe-overlap'",
    )
    assert count[0][0] == 1, "a probe opened a second connection"
    assert await exp.value("sparki_up", adapter="postgres", target="s") == 1


async def test_probe_leaves_the_runner_state_alone(pg_primary: PgCluster, start_exporter) -> None:
    exp = await start_exporter({**SLOW, "postgres": [pg_primary.target("quiet")]})
    await exp.polls("postgres", "quiet", 1)
    state = exp.runner("postgres", "quiet").state
    before = (state.polls, state.snapshot, state.last_success, dict(state.errors))
    metrics_before = await exp.value(
        "sparki_last_poll_success_timestamp_seconds", adapter="postgres", target="quiet"
    )
    for _ in range(3):
        assert (await exp.get("/probe?target=quiet"))[0] == 200
    assert (state.polls, state.snapshot, state.last_success, dict(state.errors)) == before
    assert (
        await exp.value(
            "sparki_last_poll_success_timestamp_seconds", adapter="postgres", target="quiet"
        )
        == metrics_before
    )


async def test_probe_works_for_every_adapter_and_asks_for_adapter_when_ambiguous(
    pg_primary: PgCluster, redis_server, s3_server, start_exporter
) -> None:
    exp = await start_exporter(
        {
            **SLOW,
            "postgres": [pg_primary.target("main")],
            "redis": [redis_server.target("main")],
            "s3": [s3_server.target("artifacts")],
        }
    )
    status, _, body = await exp.get("/probe?target=main")
    assert status == 400 and b"several adapters" in body and b"adapter=" in body
    for adapter, name, family in (
        ("postgres", "main", "sparki_postgres_max_connections"),
        ("redis", "main", "sparki_redis_memory_used_bytes"),
        ("s3", "artifacts", "sparki_s3_probe_duration_seconds"),
    ):
        status, _, body = await exp.get(f"/probe?target={name}&adapter={adapter}")
        assert status == 200, body
        fams = parse(body)
        assert values(body, "sparki_up") == {(("adapter", adapter), ("target", name)): 1.0}
        assert family in fams, (adapter, sorted(fams))


async def test_probe_answers_gzip_when_asked(pg_primary: PgCluster, start_exporter) -> None:
    import gzip

    exp = await start_exporter({**SLOW, "postgres": [pg_primary.target("z")]})
    async with exp.session.get(
        exp.url + "/probe?target=z", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    ) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Encoding"] == "gzip"
    assert b'sparki_up{adapter="postgres",target="z"} 1' in gzip.decompress(raw)


async def test_a_failed_polls_partial_snapshot_is_exported_with_up_0() -> None:
    """PollError(snapshot=...): what a failed poll measured stays visible, fresh."""
    from exporter.adapter import AdapterSpec, PollError, Reason
    from exporter.config import GlobalConfig, TargetConfig
    from exporter.exposition import Exposition
    from exporter.metrics import CounterMetricFamily
    from exporter.poller import TargetRunner

    class Failing:
        attempts = 0

        async def poll(self) -> Any:
            Failing.attempts += 1
            raise PollError(Reason.CONNECT, "refused", snapshot=Failing.attempts)

        async def reset(self) -> None:
            pass

        async def close(self) -> None:
            pass

    def families(count: int) -> list[Any]:
        fam = CounterMetricFamily("sparki_fake_attempts", "attempts", labels=["target"])
        fam.add_metric(["f"], count)
        return [fam]

    spec = AdapterSpec(
        name="fake",
        config=TargetConfig,
        target=lambda config, global_config: Failing(),
        families=families,
        classify=lambda exc: PollError(Reason.OTHER, str(exc)),
        from_env=lambda env: [],
    )
    runner = TargetRunner(spec, TargetConfig(name="f"), GlobalConfig())
    await runner.poll_once()
    await runner.poll_once()
    text = Exposition([runner]).render().decode()
    assert 'sparki_up{adapter="fake",target="f"} 0' in text
    assert 'sparki_fake_attempts_total{target="f"} 2' in text
    assert 'sparki_last_poll_error_reason{adapter="fake",target="f",reason="connect"} 1' in text
    result = await runner.probe(1.0)
    assert result.error is not None and result.error.reason == Reason.CONNECT
    assert b'sparki_fake_attempts_total{target="f"} 3' in b"".join(f.body for f in result.rendered)
    await runner.stop()


async def test_concurrent_probes_share_one_poll_and_a_flood_gets_429(
    pg_primary: PgCluster,
) -> None:
    """100 clients probing one target at once make one poll, not 100; probes that would
    each start a poll are limited per target (burst, then 429 with Retry-After), and
    other targets are not affected."""
    import aiohttp

    from exporter import config as config_mod
    from exporter.connlimits import ServerLimits
    from exporter.poller import PollEvent
    from exporter.service import Exporter

    events: list[PollEvent] = []
    cfg = config_mod.validate(
        {
            "poll_interval": "60s",
            "poll_timeout": "5s",
            "postgres": [pg_primary.target("a"), pg_primary.target("b")],
        },
        {},
    )
    exporter = Exporter(cfg, observer=events.append, limits=ServerLimits(probe_rate=0.5))
    await exporter.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{exporter.port}/probe?target="
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), connector=aiohttp.TCPConnector(limit=0)
        ) as session:

            async def get(name: str) -> tuple[int, str | None]:
                async with session.get(base + name) as resp:
                    await resp.read()
                    return resp.status, resp.headers.get("Retry-After")

            results = await asyncio.gather(*(get("a") for _ in range(100)))
            assert {status for status, _ in results} == {200}
            probes = [e for e in events if e.kind == "probe" and e.target == "a"]
            assert len(probes) == 1, len(probes)

            sequential = [await get("a") for _ in range(8)]
            statuses = [status for status, _ in sequential]
            # The burst of five, less the one the concurrent probes used, then 429.
            assert statuses[:4] == [200] * 4 and 429 in statuses[4:], statuses
            refused = [after for status, after in sequential if status == 429]
            assert all(after is not None and 1 <= int(after) <= 2 for after in refused)
            assert len([e for e in events if e.kind == "probe" and e.target == "a"]) <= 6
            assert (await get("b"))[0] == 200  # per target
            await asyncio.sleep(int(refused[-1]))
            assert (await get("a"))[0] == 200  # the bucket refills
    finally:
        await exporter.stop()
