"""Collectors: switching by name (flags, config), and one failing collector degrading alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from exporter import adapters
from exporter.collector import CollectorSpec, enabled, families, parse_flags, run

CATALOG = {
    "postgres": (CollectorSpec("locks", "locks"), CollectorSpec("vacuum", "vacuum", False)),
    "redis": (CollectorSpec("streams", "streams", False), CollectorSpec("locks", "x")),
}


def test_flags_switch_collectors_by_bare_or_qualified_name() -> None:
    switches, rest, problems = parse_flags(
        ["--collector.vacuum", "--no-collector.redis.locks", "--log.level", "warn"], CATALOG
    )
    assert problems == []
    assert switches == {"postgres": {"vacuum": True}, "redis": {"locks": False}}
    assert rest == ["--log.level", "warn"]


@pytest.mark.parametrize(
    ("flag", "problem"),
    [
        ("--collector.locks", "--collector.postgres.locks or --collector.redis.locks"),
        ("--collector.vacum", "did you mean 'vacuum'?"),
        ("--collector.mysql.locks", "no adapter 'mysql'"),
        ("--collector.redis.vacuum", "unknown collector 'vacuum'"),
    ],
)
def test_flag_problems_name_the_flag_and_the_fix(flag: str, problem: str) -> None:
    switches, _, problems = parse_flags([flag], CATALOG)
    assert switches == {}
    assert len(problems) == 1 and problems[0].startswith(flag) and problem in problems[0]


def test_a_target_switch_wins_over_the_adapter_switch_over_the_default() -> None:
    specs = CATALOG["postgres"]
    assert enabled(specs, {}, {}) == {"locks"}
    assert enabled(specs, {"vacuum": True, "locks": False}, {}) == {"vacuum"}
    assert enabled(specs, {"vacuum": True}, {"vacuum": False}) == {"locks"}


async def test_a_failing_collector_degrades_alone_and_a_fatal_one_fails_the_poll() -> None:
    async def ok() -> int:
        return 1

    async def refused() -> int:
        raise PermissionError("permission denied for view pg_locks at 10.0.0.7:5432")

    async def gone() -> int:
        raise ConnectionResetError("server closed the connection")

    parts, runs = await run(
        [("a", ok), ("b", refused), ("c", ok)],
        fatal=lambda e: isinstance(e, ConnectionError),
        describe=str,
    )
    assert parts == {"a": 1, "c": 1}
    assert [(r.name, r.ok) for r in runs] == [("a", True), ("b", False), ("c", True)]
    assert "permission denied" in runs[1].error and "10.0.0.7" not in runs[1].error
    exposed = {
        (m.name, s.labels["collector"]): s.value
        for m in families("postgres", "pg", runs)
        for s in m.samples
    }
    assert exposed[("sparki_collector_success", "b")] == 0.0
    assert exposed[("sparki_collector_success", "a")] == 1.0

    with pytest.raises(ConnectionResetError):
        await run([("a", ok), ("c", gone)], fatal=lambda e: isinstance(e, ConnectionError))
    await asyncio.sleep(0)


def test_every_adapter_lists_its_collectors_without_importing_its_driver() -> None:
    program = (
        "import sys; from exporter import adapters; c = adapters.all_collectors(); "
        "print(sorted(m for m in ('psycopg', 'redis', 'botocore') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
    names = adapters.all_collectors()
    assert set(names) == set(adapters.names())
    for adapter, specs in names.items():
        assert len({s.name for s in specs}) == len(specs), adapter


def test_unknown_collector_flag_exits_2_naming_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "--collector.no_such_thing"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--collector.no_such_thing" in out.stderr and "unknown collector" in out.stderr


def test_the_readme_lists_every_collector_with_its_default() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    text = readme.split("### Collectors\n", 1)[1].split("\n#", 1)[0]
    for adapter, specs in adapters.all_collectors().items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {adapter} | "))
        cells = row.strip("|").split("|")
        on, off = cells[1], cells[2]
        for spec in specs:
            assert f"`{spec.name}`" in (on if spec.default else off), (adapter, spec.name)
