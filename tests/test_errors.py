"""Error reasons from driver codes and error texts without addresses (issue 16), against
a real PostgreSQL cluster and real S3 servers (moto)."""

from __future__ import annotations

import html

import psycopg
import pytest
from fixtures_core import free_port
from fixtures_pg import PgCluster
from fixtures_s3 import AuthMotoServer

from exporter import config as config_mod
from exporter.adapters.postgres.errors import classify
from exporter.config import ConfigError

FAST = {"poll_interval": "2s", "poll_timeout": "1500ms"}


def _error_of(cluster: PgCluster, *statements: str, user: str = "postgres") -> BaseException:
    with psycopg.connect(cluster.dsn(user=user), autocommit=True) as conn:
        try:
            for statement in statements:
                conn.execute(statement.encode())
        except psycopg.Error as exc:
            return exc
    raise AssertionError("no error")


def test_query_errors_are_classified_by_sqlstate(pg_primary: PgCluster) -> None:
    """The word "timeout" in a message does not make a timeout: the SQLSTATE decides."""
    invalid = _error_of(pg_primary, "SET statement_timeout = 2592000000")
    assert "statement_timeout" in str(invalid)
    assert classify(invalid).reason == "other"  # 22023, a bad value
    cancelled = _error_of(pg_primary, "SET statement_timeout = 20", "SELECT pg_sleep(2)")
    assert classify(cancelled).reason == "timeout"  # 57014
    pg_primary.ensure_monitor_role()
    denied = _error_of(pg_primary, "SELECT pg_read_file('postgresql.conf')", user="sparki_monitor")
    assert classify(denied).reason == "permission"  # 42501
    unknown = _error_of(pg_primary, "SELECT no_such_function()")
    assert classify(unknown).reason == "protocol"  # 42883


def test_a_bogus_sslmode_fails_check_config_not_every_poll() -> None:
    with pytest.raises(ConfigError) as err:
        config_mod.validate(
            {"postgres": [{"name": "a", "dsn": "postgresql://x@db/postgres?sslmode=bogus"}]}, {}
        )
    assert err.value.lines() == [
        "postgres.0.dsn: sslmode in the DSN must be one of: disable, allow, prefer, "
        "require, verify-ca, verify-full"
    ]


async def test_postgres_failures_have_code_reasons_and_no_address(
    pg_primary: PgCluster, start_exporter, captured_logs
) -> None:
    """A missing role reads auth, a wrong password auth, a closed port connect; the
    landing page, the logs and /metrics never show the address or port."""
    secret = "s3cr3t-Pa55-word"
    if not pg_primary.sql("SELECT 1 FROM pg_roles WHERE rolname = 'sparki_pw'"):
        pg_primary.sql(f"CREATE ROLE sparki_pw LOGIN PASSWORD '{secret}' IN ROLE pg_monitor")
    closed = free_port()
    exp = await start_exporter(
        {
            **FAST,
            "postgres": [
                {"name": "norole", "dsn": pg_primary.dsn(user="no_such_role")},
                {
                    "name": "badpw",
                    "dsn": f"postgresql://sparki_pw@127.0.0.1:{pg_primary.port}/postgres",
                    "password": "wrong-password",
                },
                {"name": "closed", "dsn": f"postgresql://x@127.0.0.1:{closed}/postgres"},
            ],
        }
    )
    expected = {"norole": "auth", "badpw": "auth", "closed": "connect"}
    for name, reason in expected.items():
        await exp.wait_value("sparki_last_poll_error_reason", 1.0, target=name, reason=reason)
    _, _, page = await exp.get("/")
    text = html.unescape(page.decode())
    metrics = await exp.scrape()
    # Every line about a target (the exporter's own listen address may be logged).
    logs = "\n".join(line for line in captured_logs().splitlines() if "target=" in line)
    for surface in (text, metrics, logs):
        assert "127.0.0.1" not in surface
        assert str(pg_primary.port) not in surface
        assert str(closed) not in surface
    assert 'role "no_such_role" does not exist' in text  # the useful part stays
    assert "poll failed" in logs


async def test_s3_failures_have_code_reasons_and_no_endpoint(
    s3_auth_server: AuthMotoServer, start_exporter, captured_logs
) -> None:
    closed = free_port()
    exp = await start_exporter(
        {
            **FAST,
            "s3": [
                s3_auth_server.target("badkey", secret_access_key="wrong-secret-key"),
                s3_auth_server.target("closed", endpoint_url=f"http://127.0.0.1:{closed}"),
            ],
        }
    )
    await exp.wait_value("sparki_last_poll_error_reason", 1.0, target="badkey", reason="auth")
    await exp.wait_value("sparki_last_poll_error_reason", 1.0, target="closed", reason="connect")
    _, _, page = await exp.get("/")
    logs = "\n".join(line for line in captured_logs().splitlines() if "target=" in line)
    assert "poll failed" in logs
    for surface in (page.decode(), await exp.scrape(), logs):
        assert s3_auth_server.endpoint_url not in surface
        assert f"127.0.0.1:{closed}" not in surface and f":{closed}" not in surface
        assert "http://" not in surface.replace("http://www.w3.org", "")
