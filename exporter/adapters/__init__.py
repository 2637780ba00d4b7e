"""Adapter discovery: every package in this package is an adapter.

A package's name is its config section (``postgres/`` reads ``postgres:``), so the
sections a config uses are known without importing anything, and only their packages
are imported: a Redis-only exporter never loads psycopg or botocore (~18 MB of RSS).
Each package's ``spec`` module defines ``ADAPTER`` (and imports the driver); its
``catalog`` module names the collectors, signals and panels and imports no driver.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from functools import cache
from types import ModuleType

from ..adapter import AdapterSpec
from ..collector import CollectorSpec


@cache
def names() -> tuple[str, ...]:
    """The adapter packages shipped here, sorted, without importing them."""
    found = (info.name for info in pkgutil.iter_modules(__path__) if info.ispkg)
    return tuple(sorted(name for name in found if not name.startswith("_")))


@cache
def load(name: str) -> AdapterSpec:
    """Import one adapter's spec (and so its driver); KeyError for an unknown name."""
    if name not in names():
        raise KeyError(name)
    module = importlib.import_module(f"{__name__}.{name}.spec")
    spec = getattr(module, "ADAPTER", None)
    if not isinstance(spec, AdapterSpec) or spec.name != name:
        raise TypeError(f"exporter.adapters.{name}.spec must define ADAPTER named {name!r}")
    return spec


def catalog(name: str) -> ModuleType:
    """An adapter's catalog module (imports no driver); KeyError for an unknown name."""
    if name not in names():
        raise KeyError(name)
    return importlib.import_module(f"{__name__}.{name}.catalog")


@cache
def collectors(name: str) -> tuple[CollectorSpec, ...]:
    """An adapter's collectors, from its catalog: no driver is imported."""
    return tuple(getattr(catalog(name), "COLLECTORS", ()))


def servers() -> dict[str, str]:
    """What each adapter polls ("Redis/Valkey"), by adapter name: for --help, which so
    names every adapter shipped without a list to keep in step."""
    return {name: str(catalog(name).SERVERS) for name in names()}


def env_variables() -> dict[str, tuple[str, ...]]:
    """The variables, any one of which configures an adapter's target without a config
    file (its spec's from_env), by adapter name."""
    return {name: tuple(catalog(name).ENV_VARIABLES) for name in names()}


def all_collectors() -> dict[str, tuple[CollectorSpec, ...]]:
    """Every adapter's collectors by adapter name (for --collector.X flags)."""
    return {name: collectors(name) for name in names()}


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
