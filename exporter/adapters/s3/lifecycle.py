"""The ``lifecycle`` collector: is each prefix the storage design names managed by a rule?

The design keeps artifacts, build logs, backups and caches under ``artifacts/``,
``logs/``, ``backups/`` and ``cache/`` and archives old logs to Glacier: without an
enabled lifecycle rule (expiration or transition) covering a prefix, what lands there
stays in its storage class forever and the bill only grows. One
GetBucketLifecycleConfiguration per ``lifecycle.interval`` answers it:
``sparki_s3_lifecycle_rule_present{prefix}`` is 1 when an enabled rule applies to
every object under the prefix, else 0.

A rule covers a prefix when its status is Enabled, it expires or transitions objects
(current or noncurrent versions), and it filters on a prefix of that prefix only: a
rule that also filters on tags or object size applies to some objects only, and a
rule that only aborts incomplete uploads keeps the objects.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...adapter import PollError
from ...metrics import GaugeMetricFamily, Metric
from .context import S3Collector, S3Context
from .errors import classify, client_error

ACTIONS = (
    "Expiration",
    "Transitions",
    "NoncurrentVersionExpiration",
    "NoncurrentVersionTransitions",
)
NO_CONFIGURATION = "NoSuchLifecycleConfiguration"


def rule_prefix(rule: Mapping[str, Any]) -> str | None:
    """The prefix under which the rule manages every object; None if it covers none."""
    if rule.get("Status") != "Enabled" or not any(rule.get(a) for a in ACTIONS):
        return None
    if "Filter" not in rule:
        return str(rule.get("Prefix") or "")  # the older form: a top-level Prefix
    flt: Mapping[str, Any] = rule.get("Filter") or {}
    if "And" in flt:
        flt = flt.get("And") or {}
        if flt.get("Tags"):
            return None
    if "Tag" in flt or "ObjectSizeGreaterThan" in flt or "ObjectSizeLessThan" in flt:
        return None
    return str(flt.get("Prefix") or "")


def coverage(rules: Sequence[Mapping[str, Any]], prefixes: Sequence[str]) -> dict[str, bool]:
    """For each prefix: does an enabled rule manage every object under it?"""
    managed = [p for p in (rule_prefix(r) for r in rules) if p is not None]
    return {prefix: any(prefix.startswith(m) for m in managed) for prefix in prefixes}


@dataclass(frozen=True, slots=True)
class LifecyclePart:
    present: tuple[tuple[str, bool], ...]  # prefix, covered


class Collector(S3Collector):
    """The newest answer, refreshed at most once per ``lifecycle.interval``."""

    def __init__(self, ctx: S3Context) -> None:
        super().__init__(ctx)
        self.next = 0.0  # monotonic
        self.present: dict[str, bool] | None = None
        self.failure: PollError | None = None

    async def collect(self) -> None:
        now = time.monotonic()
        if now >= self.next:
            self.next = now + self.ctx.config.lifecycle.interval
            try:
                rules = await self.ctx.call(self._rules)
            except Exception as exc:
                self.present, self.failure = None, classify(exc)
            else:
                self.present = coverage(rules, self.ctx.config.lifecycle.prefixes)
                self.failure = None
        if self.failure is not None:
            raise PollError(self.failure.reason, self.failure.message)

    def _rules(self) -> list[dict[str, Any]]:
        """In a worker thread: the bucket's lifecycle rules; none without a configuration."""
        try:
            answer = self.ctx.s3.get_bucket_lifecycle_configuration(Bucket=self.ctx.config.bucket)
        except Exception as exc:
            info = client_error(exc)
            if info is not None and info[0] == NO_CONFIGURATION:
                return []
            raise
        return list(answer.get("Rules") or [])

    def part(self) -> LifecyclePart | None:
        if self.present is None:
            return None
        return LifecyclePart(tuple(sorted(self.present.items())))


def families(t: str, bucket: str, part: LifecyclePart | None) -> list[Metric]:
    if part is None:
        return []
    present = GaugeMetricFamily(
        "sparki_s3_lifecycle_rule_present",
        "1 when an enabled lifecycle rule expires or transitions every object under the "
        "prefix (lifecycle.prefixes), 0 when none does",
        labels=["target", "bucket", "prefix"],
    )
    for prefix, ok in part.present:
        present.add_metric([t, bucket, prefix], 1 if ok else 0)
    return [present]
