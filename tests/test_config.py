"""Configuration: every kind of mistake is reported with its dotted path, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import ConfigError, from_environment, load, parse_duration, validate

GOOD = """
poll_interval: 15s
poll_timeout: 5s
postgres:
  - name: primary
    dsn: postgresql://monitor@db:5432/postgres
    password: ${PG_PASSWORD}
"""


def check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
    )


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_text(GOOD)
    result = check_config(f, {"PG_PASSWORD": "pw-from-env"})
    assert result.returncode == 0, result.stderr
    assert "postgres/primary" in result.stdout
    config = load(f, {"PG_PASSWORD": "pw-from-env"})
    target = config.targets()[0][1]
    assert target.password.get_secret_value() == "pw-from-env"  # type: ignore[attr-defined]
    assert "pw-from-env" not in repr(config)


@pytest.mark.parametrize(
    "text,path,fragment",
    [
        ("polling_interval: 5s\n" + GOOD, "polling_interval", "did you mean poll_interval?"),
        (GOOD + "    passwrd: x\n", "postgres.0.passwrd", "unknown key"),
        (
            GOOD.replace("poll_interval: 15s", "poll_interval: 15x"),
            "poll_interval",
            "not a duration",
        ),
        (
            GOOD.replace("poll_timeout: 5s", "poll_timeout: 20s"),
            "postgres.0.poll_timeout",
            "shorter than poll_interval",
        ),
        (GOOD + "  - name: primary\n    dsn: postgresql:///x\n", "postgres.1.name", "duplicate"),
        (GOOD.replace("name: primary", "name: 'db host 1'"), "postgres.0.name", "1 to 63 letters"),
        (GOOD.replace("name: primary", "name: 'db:5432'"), "postgres.0.name", "not an address"),
        (
            GOOD.replace("${PG_PASSWORD}", "${NOT_SET_ANYWHERE}"),
            "postgres.0.password",
            "NOT_SET_ANYWHERE is not set",
        ),
        (
            GOOD.replace("password: ${PG_PASSWORD}", "password_file: /nonexistent/pw"),
            "postgres.0.password_file",
            "cannot read /nonexistent/pw",
        ),
        (
            GOOD.replace("    password: ${PG_PASSWORD}\n", "    statements_top_n: lots\n"),
            "postgres.0.statements_top_n",
            "must be a whole number",
        ),
        ("postgres: {name: x}\n", "postgres", "must be a list"),
        ("poll_interval: 15s\n", "", "no targets configured"),
        ("postgres:\n  - name: a\n  dsn: [\n", "", "line"),
    ],
)
def test_each_mistake_names_its_path_and_exits_2(
    tmp_path: Path, text: str, path: str, fragment: str
) -> None:
    f = tmp_path / "bad.yml"
    f.write_text(text)
    result = check_config(f, {"PG_PASSWORD": "x"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    prefix = f"{f}: {path}: " if path else f"{f}: "
    assert any(line.startswith(prefix) and fragment in line for line in lines), result.stderr


@pytest.mark.parametrize("section", ["postgres", "redis", "s3"])
def test_poll_timeout_equal_to_the_interval_is_refused(section: str) -> None:
    """The boundary: a timeout equal to the interval would let polls run back to back
    with no gap (and overlap with jitter), so it is refused, globally and per target."""
    target = {
        "postgres": {"name": "a", "dsn": "postgresql://m@db/postgres"},
        "redis": {"name": "a", "url": "redis://cache:6379"},
        "s3": {"name": "a", "bucket": "sparki-b", "endpoint_url": "http://s3:9000"},
    }[section]
    with pytest.raises(ConfigError) as err:
        validate({"poll_interval": "10s", "poll_timeout": "10s", section: [target]}, {})
    assert [p for p, m in err.value.problems if "shorter than poll_interval" in m] == [
        f"{section}.0.poll_timeout"
    ]
    with pytest.raises(ConfigError):
        validate({section: [{**target, "poll_interval": "2s", "poll_timeout": "2s"}]}, {})
    just_under = validate({section: [{**target, "poll_interval": "2s", "poll_timeout": "1.99s"}]})
    assert just_under.timeout_for(just_under.targets()[0][1]) == 1.99


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        validate(
            {
                "poll_interval": "nope",
                "postgres": [{"name": "a", "bogus": 1}, {"dsn": "postgresql:///x"}],
            },
            {},
        )
    paths = {p for p, _ in err.value.problems}
    assert {"poll_interval", "postgres.0.bogus", "postgres.1.name"} <= paths


def test_counts_in_messages_read_correctly_for_one() -> None:
    """ "at least 1 item", not "1 items"; and plural from 2 on."""
    with pytest.raises(ConfigError) as err:
        validate(
            {
                "etcd": [
                    {"name": "a", "endpoints": [], "canary_prefix": ""},
                    {"name": "b", "endpoints": [f"http://h{i}:2379" for i in range(17)]},
                ]
            },
            {},
        )
    assert dict(err.value.problems) == {
        "etcd.0.endpoints": "must have at least 1 item",
        "etcd.0.canary_prefix": "must be at least 1 character long",
        "etcd.1.endpoints": "must have at most 16 items",
    }


def test_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as err:
        validate({"postgres": [{"name": "a", "password": ["hunter2-secret"]}]}, {})
    assert "hunter2-secret" not in str(err.value)
    assert err.value.problems[0][0] == "postgres.0.password"


def test_secret_files_and_defaults(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-a-file\n")
    cfg = validate(
        {
            "postgres": [
                {
                    "name": "a",
                    "dsn": "postgresql:///x",
                    "password_file": str(pw),
                    "application_name": "${APP:-sparki-default}",
                }
            ]
        },
        {},
    )
    target = cfg.targets()[0][1]
    assert target.password.get_secret_value() == "from-a-file"  # type: ignore[attr-defined]
    assert target.application_name == "sparki-default"  # type: ignore[attr-defined]
    assert cfg.secrets() == ["from-a-file"]
    with pytest.raises(ConfigError, match="either password or password_file"):
        validate({"postgres": [{"name": "a", "password": "x", "password_file": str(pw)}]}, {})


def test_env_values_cannot_inject_yaml_structure() -> None:
    cfg = validate(
        {"postgres": [{"name": "a", "application_name": "${APP}"}]},
        {"APP": "x\n  password: injected"},
    )
    target = cfg.targets()[0][1]
    assert target.password is None  # type: ignore[attr-defined]
    assert target.application_name == "x\n  password: injected"  # type: ignore[attr-defined]


def test_targets_from_platform_environment_variables() -> None:
    cfg = from_environment(
        {
            "PG_HOST": "db",
            "PG_PORT": "6432",
            "PG_USER": "mon",
            "PG_PASSWORD": "pw!",
            "PG_DATABASE": "sparki",
        }
    )
    ((adapter, target),) = cfg.targets()
    assert adapter == "postgres" and target.name == "postgres"
    assert "port=6432" in target.dsn and "dbname=sparki" in target.dsn  # type: ignore[attr-defined]
    assert target.password.get_secret_value() == "pw!"  # type: ignore[attr-defined]
    assert cfg.secrets() == ["pw!"]
    with pytest.raises(ConfigError, match="PG_HOST"):
        from_environment({})


@pytest.mark.parametrize(
    "text,seconds", [("15s", 15), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), (3, 3.0)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "s", "1x", "-1s", "0s", True, None, "1s 2s"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_serve_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.yml"
    f.write_text("postgres: 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "postgres" in result.stderr and "Traceback" not in result.stderr


HUGE = "1" + "0" * 309  # an integer YAML reads exactly, past float's range


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (f"poll_interval: {HUGE}\npostgres:\n  - name: a\n", "poll_interval", "too long"),
        (
            f"postgres:\n  - name: a\n    poll_timeout: {HUGE}\n",
            "postgres.0.poll_timeout",
            "too long",
        ),
        (
            f"s3:\n  - name: a\n    bucket: b\n    connect_timeout: {HUGE}\n",
            "s3.0.connect_timeout",
            "too long",
        ),
        (
            "postgres:\n  - name: a\n    statement_timeout: 30d\n",
            "postgres.0.statement_timeout",
            "at most 2147483.647s, about 24.9d (PostgreSQL's maximum, INT_MAX ms)",
        ),
        (
            "postgres:\n  - name: a\n    lock_timeout: 25d\n",
            "postgres.0.lock_timeout",
            "PostgreSQL's maximum",
        ),
    ],
)
def test_out_of_range_durations_are_reported_with_their_path(
    tmp_path: Path, body: str, path: str, message: str
) -> None:
    """1e309 as an integer used to raise an uncaught OverflowError (a traceback, exit 1);
    statement_timeout: 30d used to pass and then fail every poll."""
    f = tmp_path / "c.yml"
    f.write_text(body)
    result = check_config(f)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{f}: {path}: " in result.stderr and message in result.stderr, result.stderr


def test_the_largest_postgres_timeouts_are_accepted() -> None:
    config = validate(
        {"postgres": [{"name": "a", "statement_timeout": "24d", "lock_timeout": "2147483s"}]}, {}
    )
    target = config.targets()[0][1]
    assert target.statement_timeout == 24 * 86400  # type: ignore[attr-defined]


def test_duplicate_keys_are_refused_with_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_text(
        "poll_interval: 15s\n"
        "postgres:\n"
        "  - name: a\n"
        "    password: first-secret-value\n"
        "    password: second-secret-value\n"
    )
    result = check_config(f)
    assert result.returncode == 2
    # The file's name once, in front, as for every other problem.
    assert result.stderr == f"{f}: duplicate key (first given at line 4) at line 5, column 5\n"
    assert "secret-value" not in result.stderr
    # Overriding a key merged in with << is what YAML merges are for: allowed.
    f.write_text(
        "defaults: &d {poll_timeout: 2s, dsn: 'postgresql:///x'}\n"
        "postgres:\n  - <<: *d\n    name: a\n    poll_timeout: 3s\n"
    )
    with pytest.raises(ConfigError) as err:
        load(f)
    assert err.value.lines() == ["defaults: unknown key"]


def test_one_run_reports_every_problem_in_our_words(tmp_path: Path) -> None:
    """A file with a problem of every kind: one check-config run lists them all, each
    with its dotted path, in the project's wording (no pydantic texts), with the nearest
    key for a misspelt one; a file that used to take five runs to fix."""
    f = tmp_path / "bad.yml"
    f.write_text(
        "poll_interval: 15s\n"
        "poll_timout: 5s\n"  # misspelt global
        "log: {level: loud}\n"  # not a level
        "postgres:\n"
        "  - name: db.example.com:5432\n"  # an address as a name
        "    dsn: postgresql://m@db/postgres\n"
        "    password_file: /nonexistent/pw\n"  # unreadable secret ...
        "    statements_top_n: lots\n"  # ... and, same target, a bad value
        "  - name: main\n"
        "    dsn: postgresql://m@db/postgres\n"
        "    poll_timeout: 20s\n"  # not shorter than the interval
        "    aplication_name: x\n"  # misspelt target key
        "  - name: main\n"  # duplicate
        "    dsn: postgresql://m@db/postgres\n"
        "redis: {name: x}\n"  # not a list
    )
    result = check_config(f)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    expected = {
        "poll_timout": "unknown key; did you mean poll_timeout?",
        "log.level": "must be one of debug, info, warn, warning, error",
        "postgres.0.name": "must be a name, not an address",
        "postgres.0.password_file": "cannot read /nonexistent/pw",
        "postgres.0.statements_top_n": "must be a whole number",
        "postgres.1.poll_timeout": "must be shorter than poll_interval (20s >= 15s)",
        "postgres.1.aplication_name": "unknown key; did you mean application_name?",
        "postgres.2.name": "duplicate target name 'main'",
        "redis": "must be a list",
    }
    for path, message in expected.items():
        assert any(line.startswith(f"{f}: {path}: {message}") for line in lines), (
            path,
            result.stderr,
        )
    assert len(lines) == len(expected), result.stderr
    for raw in ("Input should", "String should", "valid integer", "^(", "Field required"):
        assert raw not in result.stderr
    assert result.stderr.count(str(f)) == len(lines)  # the name once per line, in front


@pytest.mark.parametrize(
    "name",
    ["db:5432", "10.0.0.5", "[::1]:6379", "2001:db8::1", "redis://cache:6379", "mon@db", "a/b"],
)
def test_a_target_name_that_is_an_address_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate({"redis": [{"name": name, "url": "redis://cache:6379"}]}, {})
    assert err.value.problems == [
        (
            "redis.0.name",
            "must be a name, not an address (host:port, IP address, URL or user@host): it "
            "is the `target` label; the address goes in dsn, url or endpoint_url",
        )
    ]


@pytest.mark.parametrize("name", ["cache", "pg-main.eu", "db_1", "shard:a", "a" * 63])
def test_names_that_are_not_addresses_stay_valid(name: str) -> None:
    config = validate({"redis": [{"name": name, "url": "redis://cache:6379"}]}, {})
    assert config.targets()[0][1].name == name
