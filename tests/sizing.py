"""Memory requests sized from the measured RSS, shared by the chart's and the plain
manifests' tests: a request below what the exporter was measured to use gets the pod
evicted or OOM-killed first when its node runs short."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def mib(quantity: str) -> float:
    """A Kubernetes memory quantity in MiB (only the Mi and Gi the manifests use)."""
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, f"unexpected memory quantity {quantity!r}"
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def measured_rss_mib() -> float:
    """The RSS docs/benchmarks.md measured for 100 mixed targets in one process (the
    targets table of the Load section), in MiB."""
    row = re.search(r"^\| 100 / 100 \|.*\| ([\d.]+) MB \|[^|]*\|$", BENCHMARKS.read_text(), re.M)
    assert row, "the 100-target row of docs/benchmarks.md moved: update tests/sizing.py"
    return float(row.group(1)) / 1.048576


def assert_sized_from_the_measured_rss(resources: dict[str, Any]) -> None:
    """The request covers the measured RSS, the limit is twice the request or more."""
    request = mib(resources["requests"]["memory"])
    assert request >= measured_rss_mib(), (request, measured_rss_mib())
    assert mib(resources["limits"]["memory"]) >= 2 * request, resources
