"""Collectors: the switchable sources of data inside an adapter.

An adapter (a package under ``exporter.adapters``) polls one server per target; what it
reads there is split into collectors, one module each, as postgres_exporter's
``collector/`` has one file per collector. A collector is known by name, is on or off
by default (cheap ones on), and can be switched

* for every target of an adapter, with ``--collector.<name>`` / ``--no-collector.<name>``
  (``--collector.<adapter>.<name>`` when two adapters share a name), or the top-level
  ``collectors: {postgres: {vacuum: false}}`` key of the config file;
* for one target, with its own ``collectors: {vacuum: false}`` key, which wins.

Each poll runs the target's enabled collectors under the poll deadline through
:func:`run`. A collector that fails on its own (a missing privilege, a view an old
server lacks, a reply it cannot parse) degrades alone: its part of the snapshot is
missing, ``sparki_collector_success`` says 0 and its error is logged once per change;
the rest of the target is still exported. Only failures the adapter calls fatal (the
connection is gone, the deadline passed) fail the whole poll, because then every other
collector would fail the same way.

The names a collector has, its default and its description live in the adapter's
catalog module (``exporter.adapters.<name>.catalog``), which imports no driver, so the
command line and ``check-config`` know every collector without loading psycopg, redis
or boto3.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .errtext import without_addresses
from .logs import kv

log = logging.getLogger("sparki.collector")


@dataclass(frozen=True, slots=True)
class CollectorSpec:
    """A collector's name, what it reads, and whether it runs when nobody says."""

    name: str
    description: str
    default: bool = True


@dataclass(frozen=True, slots=True)
class CollectorRun:
    """How one collector did in one poll (exported as sparki_collector_*)."""

    name: str
    ok: bool
    duration: float
    error: str = ""


def unknown_names(names: Iterable[str], known: Sequence[str]) -> list[str]:
    """One message per name that is not a known collector, with the nearest known one."""
    problems = []
    for name in names:
        if name in known:
            continue
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        choices = ", ".join(known) if known else "none"
        problems.append(f"unknown collector {name!r} (known: {choices}){hint}")
    return problems


def enabled(
    specs: Sequence[CollectorSpec],
    adapter_switches: Mapping[str, bool],
    target_switches: Mapping[str, bool],
) -> frozenset[str]:
    """The collectors one target runs: its own switches, else the adapter's, else the default."""
    out = set()
    for spec in specs:
        on = target_switches.get(spec.name, adapter_switches.get(spec.name, spec.default))
        if on:
            out.add(spec.name)
    return frozenset(out)


def parse_flags(
    argv: Sequence[str], catalog: Mapping[str, Sequence[CollectorSpec]]
) -> tuple[dict[str, dict[str, bool]], list[str], list[str]]:
    """Pull ``--[no-]collector.[<adapter>.]<name>`` out of a command line.

    Returns (switches by adapter, the remaining arguments, problems). A bare name must
    belong to exactly one adapter; a name two adapters share needs the adapter prefix.
    """
    switches: dict[str, dict[str, bool]] = {}
    rest: list[str] = []
    problems: list[str] = []
    for arg in argv:
        if arg.startswith("--collector."):
            on, name = True, arg.removeprefix("--collector.")
        elif arg.startswith("--no-collector."):
            on, name = False, arg.removeprefix("--no-collector.")
        else:
            rest.append(arg)
            continue
        adapter, _, short = name.rpartition(".")
        if adapter:
            owners = [adapter] if adapter in catalog else []
            if not owners:
                problems.append(f"{arg}: no adapter {adapter!r} (adapters: {', '.join(catalog)})")
                continue
        else:
            owners = [a for a, specs in catalog.items() if any(s.name == short for s in specs)]
        if len(owners) > 1:
            choices = " or ".join(f"--collector.{a}.{short}" for a in owners)
            problems.append(f"{arg}: collector {short!r} exists in several adapters; use {choices}")
            continue
        if not owners or not any(s.name == short for s in catalog[owners[0]]):
            pool = catalog[owners[0]] if owners else [s for c in catalog.values() for s in c]
            known = sorted({s.name for s in pool})
            problems.extend(f"{arg}: {p}" for p in unknown_names([short], known))
            continue
        switches.setdefault(owners[0], {})[short] = on
    return switches, rest, problems


Fatal = Callable[[BaseException], bool]


class CollectorErrors:
    """Remembers each collector's last error so a failure is logged once per change."""

    def __init__(self, adapter: str, target: str) -> None:
        self.adapter = adapter
        self.target = target
        self._last: dict[str, str] = {}

    def report(self, runs: Iterable[CollectorRun]) -> None:
        for run_ in runs:
            before = self._last.get(run_.name, "")
            if run_.error == before:
                continue
            self._last[run_.name] = run_.error
            fields = kv(adapter=self.adapter, target=self.target, collector=run_.name)
            if run_.error:
                # Adapters with their own runner build CollectorRun too: strip again.
                fields["kv"]["error"] = without_addresses(run_.error)
                log.warning(
                    "collector failed; the rest of the target is still exported", extra=fields
                )
            else:
                log.info("collector recovered", extra=fields)


def failed_run(
    name: str,
    duration: float,
    exc: BaseException,
    describe: Callable[[BaseException], str] = lambda e: type(e).__name__,
) -> CollectorRun:
    """How a failed collector did: ``describe``'s text, without addresses, capped (it is
    logged, and adapters with a runner of their own build these too)."""
    return CollectorRun(name, False, duration, without_addresses(describe(exc))[:300])


async def run(
    steps: Sequence[tuple[str, Callable[[], Awaitable[Any]]]],
    fatal: Fatal,
    describe: Callable[[BaseException], str] = lambda e: type(e).__name__,
) -> tuple[dict[str, Any], tuple[CollectorRun, ...]]:
    """Run collectors one after another; (parts by name, how each did).

    Sequential on purpose: the collectors of a target share its one connection (a
    PostgreSQL connection runs one query at a time) and the poll deadline, which the
    caller enforces around the whole call. An exception ``fatal`` accepts is re-raised
    (the poll fails); any other only marks its collector failed. ``describe`` turns an
    exception into a short text safe to log (no addresses; the core redacts secrets).
    """
    parts: dict[str, Any] = {}
    runs: list[CollectorRun] = []
    for name, step in steps:
        start = time.perf_counter()
        try:
            parts[name] = await step()
        except Exception as exc:
            if fatal(exc):
                raise
            runs.append(failed_run(name, time.perf_counter() - start, exc, describe))
        else:
            runs.append(CollectorRun(name, True, time.perf_counter() - start))
    return parts, tuple(runs)


def families(adapter: str, target: str, runs: Sequence[CollectorRun]) -> list[Metric]:
    """sparki_collector_success and sparki_collector_duration_seconds for one poll."""
    success = GaugeMetricFamily(
        "sparki_collector_success",
        "1 when the collector's part of the last poll succeeded; 0 means its metrics are missing",
        labels=["adapter", "target", "collector"],
    )
    duration = GaugeMetricFamily(
        "sparki_collector_duration_seconds",
        "How long the collector took in the last poll",
        labels=["adapter", "target", "collector"],
    )
    for run_ in runs:
        success.add_metric([adapter, target, run_.name], 1.0 if run_.ok else 0.0)
        duration.add_metric([adapter, target, run_.name], run_.duration)
    return [success, duration]
