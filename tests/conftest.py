"""Fixture plugins live in fixtures_*.py, one per subsystem, so adapters add theirs alone."""

from pathlib import Path

pytest_plugins = sorted(p.stem for p in Path(__file__).parent.glob("fixtures_*.py"))
