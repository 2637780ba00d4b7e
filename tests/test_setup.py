"""scripts/setup: the project's own virtual environment, quick when already set up, and
nothing that runs the system's Python behind its back."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def test_processes_are_started_with_the_running_interpreter() -> None:
    """A test, benchmark or demo that starts `python3` by name gets the system's Python,
    which has none of the packages (they are in .venv): sys.executable it must be."""
    by_name = re.compile(r"""\[\s*["'](python3?|python3\.\d+)["']\s*,""")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("tests", "bench", "devstack", "exporter")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if by_name.search(line)
    ]
    assert not offenders, offenders


def test_scripts_run_the_virtual_environment_and_never_pip_into_the_system() -> None:
    setup = (ROOT / "scripts" / "setup").read_text()
    installs = [line for line in setup.splitlines() if "pip install" in line]
    assert installs and all(line.strip().startswith('"$VPY" -m pip') for line in installs)
    assert "VPY=$VENV/bin/python" in setup and "VENV=.venv" in setup
    for script in ("test", "demo"):
        text = (ROOT / "scripts" / script).read_text()
        code = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        assert "bash scripts/setup" in code
        assert "/.venv" in code and "python3" not in code
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.skipif(
    not (VENV / ".setup-stamp").exists()
    or (ROOT / "pyproject.toml").stat().st_mtime > (VENV / ".setup-stamp").stat().st_mtime,
    reason="not set up by scripts/setup, or pyproject.toml changed since",
)
def test_setup_is_a_quick_no_op_when_up_to_date() -> None:
    start = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup")], capture_output=True, text=True, timeout=120
    )
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert "installing" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert took < 10, took
    # The environment holds the project, editable: it imports this checkout.
    where = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import exporter; print(exporter.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert where.stdout.strip() == str(ROOT / "exporter" / "__init__.py"), where


def test_the_suite_runs_in_the_project_environment_when_started_by_scripts_test() -> None:
    import os

    if os.environ.get("VIRTUAL_ENV") != str(VENV):
        pytest.skip("not started by scripts/test")
    assert Path(sys.prefix) == VENV
