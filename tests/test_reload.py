"""Config reload: SIGHUP (and POST /-/reload when enabled) in a real process, with real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_core import free_port, wait_until
from fixtures_pg import PgCluster
from prometheus_client.parser import text_string_to_metric_families

from exporter import config as config_mod
from exporter.service import Exporter


class Process:
    def __init__(self, tmp_path: Path, config: str, *flags: str) -> None:
        self.cfg = tmp_path / "sparki.yml"
        self.cfg.write_text(config)
        self.log = tmp_path / "exporter.log"
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--config",
                str(self.cfg),
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                *flags,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
            text=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )

    def get(self, path: str, method: str = "GET") -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def samples(self, name: str, **labels: str) -> list[Any]:
        _, text = self.get("/metrics")
        return [
            s
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        found = self.samples(name, **labels)
        return found[0].value if found else None

    def wait(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait for ``predicate`` while the process lives; the log tells why it did not."""

        def check() -> Any:
            assert self.proc.poll() is None, self.log.read_text()
            return predicate()

        try:
            return wait_until(check, timeout, retry_on=(OSError,))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text()}") from None

    def hup(self, config: str) -> None:
        self.cfg.write_text(config)
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.log.read_text()


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(config: str, *flags: str) -> Process:
        p = Process(tmp_path, config, *flags)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def pg_target(cluster: PgCluster, name: str, **extra: str) -> str:
    lines = [
        f"  - name: {name}",
        f"    dsn: {cluster.dsn(user='sparki_monitor')}",
        f"    application_name: reload-{name}",
    ]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def backends(cluster: PgCluster, name: str) -> list[tuple[int, Any]]:
    return [
        (int(pid), start)
        for pid, start in cluster.sql(
            "SELECT pid, backend_start FROM pg_stat_activity "  # noqa: S608 (test names)
            f"WHERE application_name = 'reload-{name}'"
        )
    ]


HEAD = "poll_interval: 1s\npoll_timeout: 800ms\n"


def test_sighup_applies_a_good_config_and_keeps_unchanged_targets(
    pg_primary: PgCluster, redis_server, process
) -> None:
    pg_primary.ensure_monitor_role()
    p = process(
        HEAD + "postgres:\n" + pg_target(pg_primary, "keep") + pg_target(pg_primary, "drop")
    )
    p.wait(lambda: p.get("/readyz")[0] == 200)
    p.wait(lambda: backends(pg_primary, "keep") and backends(pg_primary, "drop"))
    keep_before = backends(pg_primary, "keep")
    probes_before = p.value("sparki_postgres_probe_duration_seconds_count", target="keep")
    assert probes_before

    p.hup(
        HEAD
        + "postgres:\n"
        + pg_target(pg_primary, "keep")
        + pg_target(pg_primary, "new")
        + f"redis:\n  - name: cache\n    url: {redis_server.url}\n"
    )
    p.wait(lambda: p.value("sparki_up", adapter="postgres", target="new") == 1)
    p.wait(lambda: p.value("sparki_up", adapter="redis", target="cache") == 1)
    assert p.samples("sparki_up", target="drop") == []
    assert p.samples("sparki_postgres_max_connections", target="drop") == []
    p.wait(lambda: backends(pg_primary, "drop") == [])  # its connection was closed
    # The unchanged target kept its runner: same connection, counters never reset.
    assert backends(pg_primary, "keep") == keep_before
    probes_after = p.value("sparki_postgres_probe_duration_seconds_count", target="keep")
    assert probes_after is not None and probes_after >= probes_before
    assert p.value("sparki_exporter_config_last_reload_successful") == 1
    log = p.log.read_text()
    assert "configuration reloaded" in log and "removed=postgres/drop" in log

    # A changed setting is a new runner (a new connection).
    p.hup(
        HEAD
        + "postgres:\n"
        + pg_target(pg_primary, "keep", statements_top_n="5")
        + pg_target(pg_primary, "new")
        + f"redis:\n  - name: cache\n    url: {redis_server.url}\n"
    )
    p.wait(lambda: backends(pg_primary, "keep") and backends(pg_primary, "keep") != keep_before)
    p.wait(lambda: p.value("sparki_up", adapter="postgres", target="keep") == 1)
    assert p.stop().count("Traceback") == 0


def test_sighup_that_changes_only_the_global_schedule_is_applied(redis_server, process) -> None:
    """Nothing in the target changes, only the top-level poll_interval: the target must
    move to the new schedule (a kept runner would go on polling every 30 s)."""
    target = f"redis:\n  - name: cache\n    url: {redis_server.url}\n"
    p = process("poll_interval: 30s\npoll_timeout: 800ms\n" + target)
    polls = "sparki_redis_probe_duration_seconds_count"
    p.wait(lambda: p.value(polls, target="cache") == 1)  # the first poll; the next in 30 s
    assert "30s / 0.8s" in p.get("/")[1]

    p.hup("poll_interval: 1s\npoll_timeout: 800ms\n" + target)
    p.wait(lambda: "configuration reloaded" in p.log.read_text())
    # Four polls at 1 s come long before the old schedule's next one at 30 s.
    p.wait(lambda: (p.value(polls, target="cache") or 0) >= 4, timeout=25)
    assert "1s / 0.8s" in p.get("/")[1]
    assert p.value("sparki_exporter_config_last_reload_successful") == 1
    assert p.stop().count("Traceback") == 0


def test_sighup_with_a_broken_config_keeps_the_running_one(pg_primary: PgCluster, process) -> None:
    pg_primary.ensure_monitor_role()
    good = HEAD + "postgres:\n" + pg_target(pg_primary, "a")
    p = process(good)
    p.wait(lambda: p.value("sparki_up", adapter="postgres", target="a") == 1)
    before = backends(pg_primary, "a")
    success_time = p.value("sparki_exporter_config_last_reload_success_timestamp_seconds")

    for broken, problem in (
        (good + "    polling: 5s\n", "postgres.0.polling: unknown key"),
        (good.replace("poll_timeout: 800ms", "poll_timeout: 5s"), "shorter than poll_interval"),
        ("postgres: [\n", "line 2"),
        (good + "  - name: a\n    dsn: postgresql:///x\n", "duplicate target name"),
    ):
        p.hup(broken)
        p.wait(lambda problem=problem: problem in p.log.read_text())
        p.wait(lambda: p.value("sparki_exporter_config_last_reload_successful") == 0)
        assert "reload refused" in p.log.read_text()
        # Still serving the old configuration, with the same connection.
        assert p.value("sparki_up", adapter="postgres", target="a") == 1
        assert backends(pg_primary, "a") == before
        assert (
            p.value("sparki_exporter_config_last_reload_success_timestamp_seconds") == success_time
        )

    p.hup(good)  # fixed: the reload succeeds, and nothing changed so nothing restarts
    p.wait(lambda: p.value("sparki_exporter_config_last_reload_successful") == 1)
    assert backends(pg_primary, "a") == before
    assert p.stop().count("Traceback") == 0


def test_post_reload_only_with_enable_lifecycle(pg_primary: PgCluster, process) -> None:
    pg_primary.ensure_monitor_role()
    good = HEAD + "postgres:\n" + pg_target(pg_primary, "a")
    p = process(good)
    p.wait(lambda: p.get("/healthz")[0] == 200)
    assert p.get("/-/reload", method="POST")[0] in (404, 405)
    p.stop()

    q = process(good, "--web.enable-lifecycle")
    q.wait(lambda: q.get("/healthz")[0] == 200)
    assert q.get("/-/reload")[0] == 405  # GET is not a reload
    q.cfg.write_text(good + "    polling: 1s\n")
    status, body = q.get("/-/reload", method="POST")
    assert status == 400 and "postgres.0.polling: unknown key" in body
    q.cfg.write_text(good + pg_target(pg_primary, "b"))
    status, body = q.get("/-/reload", method="POST")
    assert status == 200, body
    q.wait(lambda: q.value("sparki_up", adapter="postgres", target="b") == 1)


async def test_in_process_reload_swaps_runners(pg_primary: PgCluster) -> None:
    data: dict[str, Any] = {
        "poll_interval": "1s",
        "poll_timeout": "0.8s",
        "postgres": [pg_primary.target("x"), pg_primary.target("y")],
    }
    current = {"data": data}
    exporter = Exporter(
        config_mod.validate(data, {}), loader=lambda: config_mod.validate(current["data"], {})
    )
    await exporter.start("127.0.0.1", 0)
    try:
        x = exporter.runners[0]
        current["data"] = {**data, "postgres": [pg_primary.target("x"), pg_primary.target("z")]}
        ok, problems = await exporter.reload()
        assert ok and problems == []
        assert exporter.runners[0] is x
        assert [r.state.name for r in exporter.runners] == ["x", "z"]
        assert exporter.web.exposition.runners == exporter.runners
        current["data"] = {**data, "postgres": "nope"}
        ok, problems = await exporter.reload()
        assert not ok and problems and exporter.runners[0] is x
    finally:
        await exporter.stop()


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("poll_timeout: 1" + "0" * 309, "postgres.0.poll_timeout: is too long"),
        ("statement_timeout: 30d", "postgres.0.statement_timeout: is too long"),
    ],
)
def test_out_of_range_duration_fails_the_reload_everywhere(
    pg_primary: PgCluster, process, bad: str, problem: str
) -> None:
    """An overflowing or out-of-range duration is a failed reload on every path: POST
    /-/reload answers 400 with the field's path, SIGHUP logs it, and
    sparki_exporter_config_last_reload_successful reads 0; the running config stays."""
    pg_primary.ensure_monitor_role()
    good = HEAD + "postgres:\n" + pg_target(pg_primary, "db")
    p = process(good, "--web.enable-lifecycle")
    p.wait(lambda: p.value("sparki_up", target="db") == 1)
    broken = good + f"    {bad}\n"

    p.cfg.write_text(broken)
    status, body = p.get("/-/reload", "POST")
    assert status == 400, body
    assert problem in body
    assert p.value("sparki_exporter_config_last_reload_successful") == 0

    p.cfg.write_text(good)
    assert p.get("/-/reload", "POST")[0] == 200
    assert p.value("sparki_exporter_config_last_reload_successful") == 1

    p.hup(broken)
    p.wait(lambda: p.value("sparki_exporter_config_last_reload_successful") == 0)
    log = p.log.read_text()
    assert "reload refused, keeping the running configuration" in log and problem in log
    assert "Traceback" not in log and "never retrieved" not in log
    assert p.value("sparki_up", target="db") == 1


async def test_redaction_is_by_token_and_replaced_on_reload(
    s3_server, start_exporter, captured_logs
) -> None:
    """A secret that is a common word ("sparki", the compose file's access key) is
    redacted where it stands as a value, not inside logger names or identifiers; after a
    reload the list holds the new secrets only."""
    import logging

    from exporter import logs as logs_mod
    from exporter.logs import kv

    probe = logging.getLogger("sparki.test")
    exp = await start_exporter(
        {
            "poll_interval": "5s",
            "poll_timeout": "2s",
            "s3": [
                s3_server.target(
                    "artifacts", access_key_id="sparki", secret_access_key="sparki-secret-k3y"
                )
            ],
        }
    )
    await exp.wait_value("sparki_up", 1.0, target="artifacts")
    probe.warning("driver said", extra=kv(error='access key "sparki" rejected; key=sparki'))
    text = captured_logs()
    assert "logger=sparki.service" in text and "logger=sparki.test" in text
    assert "<redacted>." not in text
    assert 'error="access key \\"<redacted>\\" rejected; key=<redacted>"' in text

    second = config_mod.validate(
        {
            "poll_interval": "5s",
            "poll_timeout": "2s",
            "s3": [
                s3_server.target(
                    "artifacts", access_key_id="rotated-key", secret_access_key="n3w-secret"
                )
            ],
        },
        {},
    )
    await exp.exporter.apply(second)
    assert logs_mod._SECRETS == {"rotated-key", "n3w-secret"}
    probe.warning("after", extra=kv(old="key=sparki", new="key=rotated-key"))
    last = captured_logs().splitlines()[-1]
    assert 'old="key=sparki"' in last and 'new="key=<redacted>"' in last
