"""Adapter discovery: every module in this package that defines ``ADAPTER``.

A module's name is its config section (``postgres.py`` reads ``postgres:``), so the
sections a config uses are known without importing anything, and only their modules are
imported: a Redis-only exporter never loads psycopg or botocore (~18 MB of RSS).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from functools import cache

from ..adapter import AdapterSpec


@cache
def names() -> tuple[str, ...]:
    """The adapter modules shipped in this package, sorted, without importing them."""
    found = (info.name for info in pkgutil.iter_modules(__path__))
    return tuple(sorted(name for name in found if not name.startswith("_")))


@cache
def load(name: str) -> AdapterSpec:
    """Import one adapter module and return its spec; KeyError for an unknown name."""
    if name not in names():
        raise KeyError(name)
    module = importlib.import_module(f"{__name__}.{name}")
    spec = getattr(module, "ADAPTER", None)
    if not isinstance(spec, AdapterSpec) or spec.name != name:
        raise TypeError(f"exporter.adapters.{name} must define ADAPTER named {name!r}")
    return spec


def specs(selected: Iterable[str]) -> tuple[AdapterSpec, ...]:
    """The specs of the named adapters (unknown names skipped), sorted by name."""
    wanted = set(selected)
    return tuple(load(n) for n in names() if n in wanted)


def discover() -> tuple[AdapterSpec, ...]:
    """Every adapter shipped in this package, sorted by name (imports them all).

    Scanning the package (rather than keeping a list in the core) is what lets a new
    backend arrive as a single module.
    """
    return specs(names())


def by_name() -> dict[str, AdapterSpec]:
    """Adapters keyed by their config section name (imports them all)."""
    return {spec.name: spec for spec in discover()}
