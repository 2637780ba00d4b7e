"""What every adapter owes its users, checked over one table: a new adapter adds a row.

Each row says how to point a target of that adapter at a healthy server, at an address
that accepts connections and never answers, and at a server with a wrong secret, and
lists its rows of the metric contract. The tests then check, the same way for every
adapter: the contract (every name, type and label set, parseable by promtool and as
OpenMetrics), that a hung target costs one deadline and never a scrape, and that no
secret reaches /metrics, the landing page, the logs or the error messages, even with
the core's own redaction switched off.

Adapter-specific details (histogram bounds, capabilities, resets) stay in each
adapter's own test file.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fixtures_core import HungServer, timed
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from exporter.adapter import Reason

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
FAST = {"poll_interval": "1s", "poll_timeout": "0.9s"}
SCRAPE_DEADLINE = 1.0  # /metrics never waits on a target

# name (without _total) -> (type, label names): rows of the metric contract every
# adapter's targets carry.
COMMON = {
    "sparki_up": ("gauge", {"adapter", "target"}),
    "sparki_poll_duration_seconds": ("gauge", {"adapter", "target"}),
    "sparki_last_poll_success_timestamp_seconds": ("gauge", {"adapter", "target"}),
    "sparki_poll_errors": ("counter", {"adapter", "target", "reason"}),
}


@dataclass(frozen=True)
class Row:
    """One adapter, as the shared tests need it."""

    adapter: str
    server: str  # the fixture of a healthy, shared server
    healthy: Callable[[Any], dict[str, Any]]  # server -> target config (name set later)
    hung: Callable[[int], dict[str, Any]]  # port that never answers -> target config
    # A fixture whose server checks credentials, and (server, secret) -> target config;
    # None for a store without credentials (an embedded store's files and expvar).
    secret_server: str | None
    wrong_secret: Callable[[Any, str], dict[str, Any]] | None
    contract: dict[str, tuple[str, set[str]]] = field(default_factory=dict)
    must_have_samples: tuple[str, ...] = ()  # contract names a healthy poll always fills


def _pg_wrong_secret(cluster: Any, secret: str) -> dict[str, Any]:
    # sparki_pw must use scram-sha-256 (the fixture's pg_hba.conf): a wrong password fails.
    dsn = f"postgresql://sparki_pw@127.0.0.1:{cluster.port}/postgres"
    return {"dsn": dsn, "password": secret}


# A small directory that always exists, for the LSM row's hung target: only its expvar
# endpoint hangs.
_SMALL_DIR = str(Path(__file__).resolve().parent / "promtool")

ROWS = [
    Row(
        adapter="postgres",
        server="pg_primary",
        healthy=lambda cluster: cluster.target("t"),
        hung=lambda port: {"dsn": f"postgresql://x@127.0.0.1:{port}/postgres"},
        secret_server="pg_primary",
        wrong_secret=_pg_wrong_secret,
        contract={
            "sparki_postgres_statement_duration_seconds": ("histogram", {"target", "datname"}),
            "sparki_postgres_probe_duration_seconds": ("histogram", {"target"}),
            "sparki_postgres_connections": ("gauge", {"target", "state"}),
            "sparki_postgres_max_connections": ("gauge", {"target"}),
            "sparki_postgres_transactions": ("counter", {"target", "datname", "outcome"}),
            "sparki_postgres_blocks_hit": ("counter", {"target", "datname"}),
            "sparki_postgres_blocks_read": ("counter", {"target", "datname"}),
            "sparki_postgres_deadlocks": ("counter", {"target", "datname"}),
            "sparki_postgres_temp_files": ("counter", {"target", "datname"}),
            "sparki_postgres_temp_written_bytes": ("counter", {"target", "datname"}),
            "sparki_postgres_conflicts": ("counter", {"target", "datname"}),
            "sparki_postgres_replication_lag_seconds": ("gauge", {"target", "replica"}),
            "sparki_postgres_replication_lag_bytes": ("gauge", {"target", "replica"}),
            "sparki_postgres_statement_calls": ("counter", {"target", "datname", "queryid"}),
            "sparki_postgres_statement_seconds": ("counter", {"target", "datname", "queryid"}),
            "sparki_postgres_statement_info": (
                "gauge",
                {"target", "datname", "queryid", "query"},
            ),
        },
        must_have_samples=(
            "sparki_postgres_probe_duration_seconds",
            "sparki_postgres_connections",
            "sparki_postgres_max_connections",
            "sparki_postgres_transactions",
        ),
    ),
    Row(
        adapter="mysql",
        server="mysql_server",
        healthy=lambda server: server.target("t"),
        hung=lambda port: {"dsn": f"mysql://x@127.0.0.1:{port}/"},
        secret_server="mysql_server",
        wrong_secret=lambda server, secret: {**server.target("t"), "password": secret},
        contract={
            "sparki_mysql_statement_duration_seconds": ("histogram", {"target", "schema"}),
            "sparki_mysql_probe_duration_seconds": ("histogram", {"target"}),
            "sparki_mysql_connections": ("gauge", {"target"}),
            "sparki_mysql_max_connections": ("gauge", {"target"}),
            "sparki_mysql_threads_running": ("gauge", {"target"}),
            "sparki_mysql_aborted_connects": ("counter", {"target"}),
            "sparki_mysql_queries": ("counter", {"target"}),
            "sparki_mysql_slow_queries": ("counter", {"target"}),
            "sparki_mysql_innodb_buffer_pool_read_requests": ("counter", {"target"}),
            "sparki_mysql_innodb_buffer_pool_reads": ("counter", {"target"}),
            "sparki_mysql_innodb_buffer_pool_pages": ("gauge", {"target", "state"}),
            "sparki_mysql_innodb_deadlocks": ("counter", {"target"}),
            "sparki_mysql_statement_calls": ("counter", {"target", "schema", "digest"}),
            "sparki_mysql_statement_seconds": ("counter", {"target", "schema", "digest"}),
            "sparki_mysql_statement_info": ("gauge", {"target", "schema", "digest", "query"}),
            "sparki_mysql_replication_running": ("gauge", {"target", "channel", "thread"}),
            "sparki_mysql_replication_lag_seconds": ("gauge", {"target", "channel"}),
        },
        must_have_samples=(
            "sparki_mysql_statement_duration_seconds",
            "sparki_mysql_probe_duration_seconds",
            "sparki_mysql_connections",
            "sparki_mysql_max_connections",
            "sparki_mysql_queries",
            "sparki_mysql_innodb_buffer_pool_read_requests",
            "sparki_mysql_innodb_deadlocks",
        ),
    ),
    Row(
        adapter="redis",
        server="redis_server",
        healthy=lambda server: server.target("t"),
        hung=lambda port: {"url": f"redis://127.0.0.1:{port}"},
        secret_server="redis_acl",
        wrong_secret=lambda acl, secret: {**acl.target("t"), "password": secret},
        contract={
            "sparki_redis_command_duration_seconds": ("histogram", {"target", "cmd"}),
            "sparki_redis_probe_duration_seconds": ("histogram", {"target"}),
            "sparki_redis_memory_used_bytes": ("gauge", {"target"}),
            "sparki_redis_memory_max_bytes": ("gauge", {"target"}),
            "sparki_redis_evicted_keys": ("counter", {"target"}),
            "sparki_redis_keyspace_hits": ("counter", {"target"}),
            "sparki_redis_keyspace_misses": ("counter", {"target"}),
            "sparki_redis_commands_processed": ("counter", {"target"}),
            "sparki_redis_connected_clients": ("gauge", {"target"}),
        },
        must_have_samples=(
            "sparki_redis_command_duration_seconds",
            "sparki_redis_probe_duration_seconds",
            "sparki_redis_memory_used_bytes",
            "sparki_redis_memory_max_bytes",
            "sparki_redis_commands_processed",
            "sparki_redis_connected_clients",
        ),
    ),
    Row(
        adapter="memcached",
        server="memcached_server",
        healthy=lambda server: server.target("t"),
        hung=lambda port: {"nodes": [f"127.0.0.1:{port}"]},
        secret_server="memcached_auth",
        wrong_secret=lambda server, secret: {**server.target("t"), "password": secret},
        contract={
            "sparki_memcached_canary_duration_seconds": (
                "histogram",
                {"target", "node", "operation"},
            ),
            "sparki_memcached_canary_operations": ("counter", {"target", "node", "operation"}),
            "sparki_memcached_canary_errors": (
                "counter",
                {"target", "node", "operation", "reason"},
            ),
            "sparki_memcached_node_up": ("gauge", {"target", "node"}),
            "sparki_memcached_memory_used_bytes": ("gauge", {"target", "node"}),
            "sparki_memcached_memory_limit_bytes": ("gauge", {"target", "node"}),
            "sparki_memcached_items": ("gauge", {"target", "node"}),
            "sparki_memcached_connections": ("gauge", {"target", "node"}),
            "sparki_memcached_max_connections": ("gauge", {"target", "node"}),
            "sparki_memcached_evictions": ("counter", {"target", "node"}),
            "sparki_memcached_reclaimed": ("counter", {"target", "node"}),
            "sparki_memcached_get_hits": ("counter", {"target", "node"}),
            "sparki_memcached_get_misses": ("counter", {"target", "node"}),
            "sparki_memcached_rejected_connections": ("counter", {"target", "node"}),
            "sparki_memcached_listen_disabled": ("counter", {"target", "node"}),
            "sparki_memcached_read_bytes": ("counter", {"target", "node"}),
            "sparki_memcached_written_bytes": ("counter", {"target", "node"}),
            "sparki_memcached_commands": ("counter", {"target", "node", "command"}),
            "sparki_memcached_malloced_bytes": ("gauge", {"target", "node"}),
            "sparki_memcached_slab_memory_bytes": ("gauge", {"target", "node", "slab"}),
            "sparki_memcached_evictions_enabled": ("gauge", {"target", "node"}),
        },
        must_have_samples=(
            "sparki_memcached_canary_duration_seconds",
            "sparki_memcached_canary_operations",
            "sparki_memcached_node_up",
            "sparki_memcached_memory_used_bytes",
            "sparki_memcached_memory_limit_bytes",
            "sparki_memcached_max_connections",
            "sparki_memcached_get_hits",
            "sparki_memcached_commands",
            "sparki_memcached_malloced_bytes",
            "sparki_memcached_evictions_enabled",
        ),
    ),
    Row(
        adapter="s3",
        server="s3_server",
        healthy=lambda server: server.target("t"),
        hung=lambda port: {
            "bucket": "sparki-test",
            "endpoint_url": f"http://127.0.0.1:{port}",
            "region": "us-east-1",
            "access_key_id": "AKIASPARKITEST000001",
            "secret_access_key": "sparki-test-secret-0f3c9a7b",
        },
        secret_server="s3_auth_server",
        wrong_secret=lambda server, secret: server.target(
            "t", access_key_id="AKIALEAKCHECK0000001", secret_access_key=secret
        ),
        contract={
            "sparki_s3_probe_duration_seconds": ("histogram", {"target", "bucket", "operation"}),
            "sparki_s3_probes": ("counter", {"target", "bucket", "operation"}),
            "sparki_s3_probe_errors": ("counter", {"target", "bucket", "operation", "reason"}),
        },
        must_have_samples=("sparki_s3_probe_duration_seconds", "sparki_s3_probes"),
    ),
    Row(
        adapter="etcd",
        server="etcd_server",
        healthy=lambda member: member.target("t"),
        hung=lambda port: {"endpoints": [f"http://127.0.0.1:{port}"]},
        secret_server="etcd_auth",
        wrong_secret=lambda member, secret: member.target("t", username="root", password=secret),
        contract={
            "sparki_etcd_canary_duration_seconds": ("histogram", {"target", "operation"}),
            "sparki_etcd_canary_errors": ("counter", {"target", "operation", "reason"}),
            "sparki_etcd_member_up": ("gauge", {"target", "member"}),
            "sparki_etcd_db_size_bytes": ("gauge", {"target", "member"}),
            "sparki_etcd_db_size_in_use_bytes": ("gauge", {"target", "member"}),
            "sparki_etcd_db_quota_bytes": ("gauge", {"target"}),
            "sparki_etcd_has_leader": ("gauge", {"target", "member"}),
            "sparki_etcd_is_leader": ("gauge", {"target", "member"}),
            "sparki_etcd_raft_term": ("gauge", {"target", "member"}),
            "sparki_etcd_raft_index": ("gauge", {"target", "member"}),
            "sparki_etcd_raft_index_lag": ("gauge", {"target", "member"}),
            "sparki_etcd_cluster_members": ("gauge", {"target"}),
            "sparki_etcd_leader_changes": ("counter", {"target"}),
            "sparki_etcd_alarm": ("gauge", {"target", "alarm"}),
        },
        must_have_samples=(
            "sparki_etcd_canary_duration_seconds",
            "sparki_etcd_member_up",
            "sparki_etcd_db_size_bytes",
            "sparki_etcd_has_leader",
            "sparki_etcd_alarm",
        ),
    ),
    Row(
        adapter="nats",
        server="nats_server",
        healthy=lambda server: server.target("t"),
        hung=lambda port: {"url": f"nats://127.0.0.1:{port}"},
        secret_server="nats_token",
        wrong_secret=lambda server, secret: {**server.target("t"), "token": secret},
        contract={
            "sparki_nats_canary_duration_seconds": ("histogram", {"target"}),
            "sparki_nats_canary_failures": ("counter", {"target"}),
            "sparki_nats_connections": ("gauge", {"target"}),
            "sparki_nats_max_connections": ("gauge", {"target"}),
            "sparki_nats_slow_consumers": ("counter", {"target"}),
            "sparki_nats_jetstream_enabled": ("gauge", {"target"}),
            "sparki_nats_jetstream_healthy": ("gauge", {"target"}),
            "sparki_nats_stream_bytes": ("gauge", {"target", "stream"}),
            "sparki_nats_consumer_pending_messages": ("gauge", {"target", "stream", "consumer"}),
            "sparki_nats_pending_bytes": ("gauge", {"target"}),
            "sparki_nats_client_pending_bytes": ("gauge", {"target", "client"}),
            "sparki_nats_closed_connections": ("counter", {"target", "reason"}),
        },
        must_have_samples=(
            "sparki_nats_canary_duration_seconds",
            "sparki_nats_connections",
            "sparki_nats_jetstream_healthy",
            "sparki_nats_client_pending_bytes",
        ),
    ),
    Row(
        adapter="lsm",
        server="badger_host",
        healthy=lambda host: host.target("t"),
        hung=lambda port: {
            "engine": "badger",
            "directory": _SMALL_DIR,
            "expvar_url": f"http://127.0.0.1:{port}/debug/vars",
        },
        secret_server=None,
        wrong_secret=None,
        contract={
            "sparki_lsm_directory_bytes": ("gauge", {"target", "kind"}),
            "sparki_lsm_directory_files": ("gauge", {"target", "kind"}),
            "sparki_lsm_table_files": ("gauge", {"target"}),
            "sparki_lsm_directory_walk_truncated": ("gauge", {"target"}),
            "sparki_lsm_filesystem_size_bytes": ("gauge", {"target"}),
            "sparki_lsm_filesystem_free_bytes": ("gauge", {"target"}),
            "sparki_lsm_filesystem_avail_bytes": ("gauge", {"target"}),
            "sparki_lsm_info": ("gauge", {"target", "engine"}),
            "sparki_lsm_badger_lsm_size_bytes": ("gauge", {"target", "dir"}),
            "sparki_lsm_badger_vlog_size_bytes": ("gauge", {"target", "dir"}),
            "sparki_lsm_badger_pending_writes": ("gauge", {"target", "dir"}),
            "sparki_lsm_badger_gets": ("counter", {"target"}),
            "sparki_lsm_badger_puts": ("counter", {"target"}),
            "sparki_lsm_badger_blocked_puts": ("counter", {"target"}),
            "sparki_lsm_badger_disk_reads": ("counter", {"target"}),
            "sparki_lsm_badger_disk_writes": ("counter", {"target"}),
            "sparki_lsm_badger_read_bytes": ("counter", {"target"}),
            "sparki_lsm_badger_written_bytes": ("counter", {"target"}),
            "sparki_lsm_badger_lsm_level_gets": ("counter", {"target", "level"}),
            "sparki_lsm_badger_lsm_bloom_hits": ("counter", {"target", "level"}),
        },
        must_have_samples=(
            "sparki_lsm_directory_bytes",
            "sparki_lsm_table_files",
            "sparki_lsm_filesystem_avail_bytes",
            "sparki_lsm_badger_vlog_size_bytes",
            "sparki_lsm_badger_puts",
            "sparki_lsm_badger_blocked_puts",
        ),
    ),
]


def contract_of(adapter: str) -> dict[str, tuple[str, set[str]]]:
    """An adapter's rows of the metric contract, for its own test file's finer checks."""
    return next(row.contract for row in ROWS if row.adapter == adapter)


def config(row: Row, name: str, target: dict[str, Any]) -> dict[str, Any]:
    return {**FAST, row.adapter: [{**target, "name": name}]}


@pytest.fixture(params=ROWS, ids=lambda row: row.adapter)
def row(request: pytest.FixtureRequest) -> Row:
    return request.param  # type: ignore[no-any-return]


async def test_contract_names_types_labels_and_formats(
    row: Row, request: pytest.FixtureRequest, start_exporter: Any
) -> None:
    server = request.getfixturevalue(row.server)
    exp = await start_exporter(config(row, "contract", row.healthy(server)))
    await exp.wait_value("sparki_up", 1, timeout=30, adapter=row.adapter, target="contract")
    await exp.polls(row.adapter, "contract", 2)

    fams = await exp.families()
    for name, (mtype, labels) in {**row.contract, **COMMON}.items():
        assert name in fams, f"{name} missing"
        assert fams[name].type == mtype, f"{name} is {fams[name].type}, want {mtype}"
        mine = [s for s in fams[name].samples if s.labels.get("target") == "contract"]
        if name in COMMON or name in row.must_have_samples:
            assert mine, f"{name} has no sample for the target"
        for sample in mine:
            got = set(sample.labels) - {"le"}
            assert got == labels, f"{sample.name} labels {got} != {labels}"
            if mtype == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
    assert fams["sparki_exporter_build_info"].samples[0].value == 1

    text = await exp.scrape()
    check = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"sparki_{row.adapter}" not in check.stdout, check.stdout  # no lint on our names
    _, _, body = await exp.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    om = {f.name: f for f in om_parse(body.decode())}
    for name, (mtype, _) in row.contract.items():
        assert om[name].type == mtype, name


async def test_a_hung_target_costs_one_deadline_and_never_a_scrape(
    row: Row, request: pytest.FixtureRequest, hung_server: HungServer, start_exporter: Any
) -> None:
    healthy = request.getfixturevalue(row.server)
    exp = await start_exporter(
        {
            **FAST,
            row.adapter: [
                {**row.hung(hung_server.port), "name": "hung"},
                {**row.healthy(healthy), "name": "healthy"},
            ],
        }
    )
    state = exp.runner(row.adapter, "hung").state
    await exp.wait_for(lambda: state.polled, 15)
    await exp.polls(row.adapter, "hung", 1)  # a second timeout: it does not pile up
    assert state.last_reason == Reason.TIMEOUT, state.last_error
    assert state.last_duration is not None and state.last_duration < 0.9 + 1.0
    assert await exp.value("sparki_up", adapter=row.adapter, target="hung") == 0
    reasons = await exp.samples("sparki_last_poll_error_reason", target="hung")
    assert [s.labels["reason"] for s in reasons] == ["timeout"]
    await exp.wait_value("sparki_up", 1, timeout=30, adapter=row.adapter, target="healthy")
    for _ in range(5):
        with timed() as t:
            await exp.scrape()
        assert t[0] < SCRAPE_DEADLINE, f"a scrape took {t[0]:.2f}s with a hung target"
    assert f"127.0.0.1:{hung_server.port}" not in await exp.scrape()


async def test_a_wrong_secret_never_appears_anywhere(
    row: Row,
    request: pytest.FixtureRequest,
    start_exporter: Any,
    captured_logs: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    if row.secret_server is None or row.wrong_secret is None:
        pytest.skip(f"{row.adapter}: the store takes no credentials")
    server = request.getfixturevalue(row.secret_server)
    secret = f"Leak-Check/{row.adapter}+{tmp_path.name[-6:]}"
    # The core redacts configured secrets as a second line of defence: switch it off so
    # the adapter itself is tested.
    monkeypatch.setattr("exporter.service.register_secrets", lambda secrets: None)
    exp = await start_exporter(config(row, "wrong", row.wrong_secret(server, secret)))
    state = exp.runner(row.adapter, "wrong").state
    await exp.wait_for(lambda: state.polled, 30)
    await exp.polls(row.adapter, "wrong", 1)
    assert state.last_reason == Reason.AUTH, state.last_error
    assert state.last_error
    _, _, landing = await exp.get("/")
    for where, text in {
        "metrics": await exp.scrape(),
        "landing page": landing.decode(),
        "logs": captured_logs(),
        "error": state.last_error,
    }.items():
        assert secret not in text, f"the secret leaked into the {where}"


def test_every_adapter_has_a_row() -> None:
    from exporter.adapters import by_name

    assert {row.adapter for row in ROWS} == set(by_name()), "add a Row for the new adapter"
