"""The wheel a user installs: metadata, licence, and every subcommand run from it.

The editable install the tests use hides what a wheel lacks (data files, a checkout to
fall back on). Here the project is built into a wheel, installed into a fresh virtual
environment with its locked dependencies (requirements.lock), and run from outside the
checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from exporter.generate.catalog import SDK_REQUIREMENT

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".venv"),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (found,) = out.glob("sparki_exporter-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain venv (no system site packages: the machine's editable install of a
    checkout would shadow the wheel) with the locked dependencies, the generate extra's
    SDK, and the wheel."""
    env = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    pip = [str(env / "bin" / "pip"), "--disable-pip-version-check", "install", "--quiet"]
    for args in (
        [
            "--require-hashes",
            "--only-binary=:all:",
            "--no-deps",
            "-r",
            str(ROOT / "requirements.lock"),
        ],
        ["--no-deps", SDK_REQUIREMENT],
        ["--no-deps", str(wheel)],
    ):
        installed = subprocess.run(
            [*pip, *args], capture_output=True, text=True, timeout=900, env=_clean_env()
        )
        assert installed.returncode == 0, installed.stderr[-2000:]
    return env


def _clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH: the checkout on it would make pip believe
    sparki-exporter is installed already, and Python import the checkout."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not the checkout
    return subprocess.run(
        [str(venv / "bin" / "sparki-exporter"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def test_wheel_metadata_carries_an_spdx_licence_and_the_licence_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
        licence = [n for n in names if n.endswith("LICENSE") and ".dist-info/" in n]
        assert licence, names
        assert "Apache License" in zf.read(licence[0]).decode()
    assert "License-Expression: Apache-2.0" in metadata
    # The floor is an installable release that passes the PostgreSQL tests: 3.2.0[binary]
    # asks for an unpublished build, older 3.2.x hang or pile up connections.
    assert "Requires-Dist: psycopg[binary]<4,>=3.2.8" in metadata
    assert not any(n.startswith(("tests/", "devstack/", "bench/")) for n in names), names


def test_installed_wheel_runs_every_subcommand(venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import exporter; print(exporter.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    # The wheel's copy, not the system's editable install of a checkout.
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    version = _run(venv, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("sparki-exporter ")

    cfg = tmp_path / "sparki.yml"
    cfg.write_text("redis:\n  - name: cache\n    url: redis://127.0.0.1:6399/0\n")
    checked = _run(venv, "check-config", str(cfg), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr

    # generate: without a thresholds file it says what to pass instead of a traceback...
    missing = _run(venv, "generate", cwd=tmp_path)
    assert missing.returncode == 2 and "--root" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr
    # ...and with one it writes every generated file under the given directory, the
    # same files as the checkout's committed ones.
    out = tmp_path / "out"
    (out / "rules").mkdir(parents=True)
    shutil.copy(ROOT / "rules" / "thresholds.yaml", out / "rules" / "thresholds.yaml")
    generated = _run(venv, "generate", "--root", str(out), cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    rule_files = sorted(p.name for p in (out / "rules").glob("*.rules.yml"))
    assert rule_files == sorted(p.name for p in (ROOT / "rules").glob("*.rules.yml"))
    for name in rule_files:
        assert (out / "rules" / name).read_text() == (ROOT / "rules" / name).read_text()
    dashboards = sorted(p.name for p in (out / "dashboards").glob("*.json"))
    assert dashboards == sorted(p.name for p in (ROOT / "dashboards").glob("*.json"))


def test_the_image_build_steps_work_without_an_engine(tmp_path: Path) -> None:
    """The Dockerfile's build stage, replayed in a plain venv: the lock installs with
    hashes checked, the project on top with --no-deps, and the result runs from
    compiled bytecode (no .py is compiled at start)."""
    env = tmp_path / "opt"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    pip = [str(env / "bin" / "pip"), "--disable-pip-version-check", "install", "--quiet"]
    locked = subprocess.run(
        [
            *pip,
            "--require-hashes",
            "--only-binary=:all:",
            "--no-deps",
            "-r",
            str(ROOT / "requirements.lock"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert locked.returncode == 0, locked.stderr[-3000:]
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "exporter", src / "exporter", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    project = subprocess.run(
        [*pip, "--no-deps", str(src)], capture_output=True, text=True, timeout=600
    )
    assert project.returncode == 0, project.stderr[-3000:]
    subprocess.run(
        [
            str(env / "bin" / "python"),
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(env / "lib"),
        ],
        check=True,
        timeout=600,
    )
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run(
        [
            str(env / "bin" / "python"),
            "-c",
            "import exporter.service, exporter.adapters.postgres.spec, "
            "exporter.adapters.redis.spec, exporter.adapters.s3.spec, exporter.tracing; "
            "import exporter, sys; print(exporter.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**clean, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert check.returncode == 0 and check.stdout.startswith(str(env)), check.stderr[-3000:]
    version = subprocess.run(
        [str(env / "bin" / "sparki-exporter"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
    )
    assert version.returncode == 0, version.stderr
    # Every module of the exporter has its compiled form next to it.
    sources = list((env / "lib").glob("python3.*/site-packages/exporter/**/*.py"))
    assert sources
    for source in sources:
        cached = list(source.parent.glob(f"__pycache__/{source.stem}.cpython-*.pyc"))
        assert cached, source
