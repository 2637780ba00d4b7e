"""Adapter discovery: every module in this package that defines ``ADAPTER``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from ..adapter import AdapterSpec


@cache
def discover() -> tuple[AdapterSpec, ...]:
    """Return the adapters shipped in this package, sorted by name.

    Scanning the package (rather than keeping a list in the core) is what lets a new
    backend arrive as a single module.
    """
    specs: list[AdapterSpec] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "ADAPTER", None)
        if isinstance(spec, AdapterSpec):
            specs.append(spec)
    return tuple(sorted(specs, key=lambda s: s.name))


def by_name() -> dict[str, AdapterSpec]:
    """Adapters keyed by their config section name."""
    return {spec.name: spec for spec in discover()}
