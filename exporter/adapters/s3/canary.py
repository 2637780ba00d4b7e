"""The ``canary`` collector: PUT, GET, HEAD and DELETE of a small random object.

Every poll writes an object under a dedicated prefix, reads it back and compares the
bytes, HEADs it and deletes it, each timed into ``sparki_s3_probe_duration_seconds``.
Every key is remembered from before its PUT is sent until a DELETE succeeded, so an
object is never left behind: a DELETE that fails (or could not be tried because the
endpoint stopped answering) is retried on the next polls. A lifecycle rule on the
prefix is the safety net (docs/s3.md).

It is the target's liveness check: when the PUT fails because the endpoint cannot be
reached (``connect``), does not answer in time (``timeout``), rejects the credentials
(``auth``/``permission``) or the bucket does not exist, :meth:`Collector.collect`
raises a :class:`PollError` and the poll fails (``sparki_up`` 0), with the failed
attempts still exported. Any other failure (a 5xx, throttling, a checksum mismatch, a
failed GET/HEAD/DELETE) is counted in ``sparki_s3_probe_errors_total`` and the poll
succeeds, so the failure *rate* is visible.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...adapter import PollError, Reason
from ...logs import kv
from ...metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from .context import S3Collector, S3Context
from .errors import (
    PERMISSION_CODES,
    PROBE_OPERATIONS,
    PROBE_REASONS,
    ChecksumMismatch,
    client_error,
    describe,
    probe_reason,
)

log = logging.getLogger("sparki.s3")

# S3 answers in tens to hundreds of milliseconds; 0.05, 0.1 and 0.2 are bucket edges.
PROBE_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen: its outcome is handled elsewhere or not needed."""
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class CanaryPart:
    histograms: tuple[tuple[str, HistogramSnapshot], ...]
    probes: tuple[tuple[str, int], ...]
    probe_errors: tuple[tuple[str, str, int], ...]
    pending_deletes: int
    cleanups: tuple[tuple[str, int], ...]


class Collector(S3Collector):
    """The canary's counters and the keys that may still exist."""

    def __init__(self, ctx: S3Context) -> None:
        super().__init__(ctx)
        self.histograms = {op: HistogramState(PROBE_BUCKETS) for op in PROBE_OPERATIONS}
        self.probes: Counter[str] = Counter()
        self.probe_errors: Counter[tuple[str, str]] = Counter()
        self.pending: dict[str, None] = {}  # keys that may exist, oldest first
        self.cleanups: Counter[str] = Counter()

    async def collect(self) -> None:
        failed = await self.run()
        if failed is not None:
            raise failed

    def part(self) -> CanaryPart:
        return CanaryPart(
            histograms=tuple((op, self.histograms[op].snapshot()) for op in PROBE_OPERATIONS),
            probes=tuple((op, self.probes[op]) for op in PROBE_OPERATIONS),
            probe_errors=tuple(
                (op, reason, self.probe_errors[(op, reason)])
                for op in PROBE_OPERATIONS
                for reason in PROBE_REASONS
            ),
            pending_deletes=len(self.pending),
            cleanups=tuple((r, self.cleanups[r]) for r in ("deleted", "failed")),
        )

    async def close(self) -> None:
        """Best effort: delete leftover canary objects quickly."""
        try:
            if self.pending and self.ctx.s3 is not None:
                await asyncio.wait_for(self._retry_pending(limit=20), 1.5)
        except Exception:  # noqa: S110 (best effort at shutdown)
            pass
        if self.pending:
            log.warning(
                "canary objects may be left behind; the lifecycle rule on the prefix removes them",
                extra=kv(target=self.ctx.config.name, objects=len(self.pending)),
            )

    async def _op(self, op: str, fn: Callable[[], None]) -> BaseException | None:
        """Run one timed canary operation on the pool; record it even if we stop waiting."""

        def timed() -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        future = await self.ctx.submit(timed)

        def record(fut: asyncio.Future[float]) -> None:
            if fut.cancelled():
                return  # never ran
            self.probes[op] += 1
            exc = fut.exception()
            if exc is None:
                self.histograms[op].observe(fut.result())
            else:
                self.probe_errors[(op, probe_reason(exc))] += 1

        future.add_done_callback(record)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return exc
        return None

    async def run(self) -> PollError | None:
        cfg = self.ctx.config
        bucket = cfg.bucket
        key = f"{cfg.canary.prefix}{uuid.uuid4().hex}"
        body = os.urandom(cfg.canary.object_size)
        self._remember(key)  # from before the PUT is sent: it may land even if we time out
        s3 = self.ctx.s3

        def put() -> None:
            s3.put_object(Bucket=bucket, Key=key, Body=body)

        def get() -> None:
            response = s3.get_object(Bucket=bucket, Key=key)
            stream = response["Body"]
            try:
                data = stream.read()
            finally:
                stream.close()
            if data != body:
                raise ChecksumMismatch(
                    f"GET returned {len(data)} bytes that differ from the {len(body)} written"
                )

        def head() -> None:
            length = s3.head_object(Bucket=bucket, Key=key).get("ContentLength")
            if length != len(body):
                raise ChecksumMismatch(f"HEAD reports {length} bytes, {len(body)} were written")

        def delete() -> None:
            s3.delete_object(Bucket=bucket, Key=key)

        failed = False
        error = await self._op("put", put)
        if error is not None:
            failed = True
            reason = probe_reason(error)
            if reason in ("connect", "auth", "no_bucket", "throttled"):
                self.pending.pop(key, None)  # the PUT was refused: nothing was written
            if reason in ("timeout", "connect", "auth", "no_bucket"):
                # The bucket is unusable: the poll fails. A timed-out PUT's key stays
                # pending; it is deleted once the endpoint answers again.
                return self._canary_failure(reason, error)
            self._note_canary_problem("put", reason, error)
        else:
            for op, fn in (("get", get), ("head", head)):
                error = await self._op(op, fn)
                if error is not None:
                    failed = True
                    reason = probe_reason(error)
                    self._note_canary_problem(op, reason, error)
                    if reason in ("timeout", "connect"):
                        return None  # the endpoint stopped answering: DELETE on a later poll
        if key in self.pending:
            error = await self._op("delete", delete)
            if error is not None:
                self._note_canary_problem("delete", probe_reason(error), error)
                return None
            self.pending.pop(key, None)
        if not failed:
            self.ctx.report("canary", None, "canary succeeds again", bucket=cfg.bucket)
        if self.pending:
            await self._retry_pending(limit=cfg.canary.pending_deletes_per_poll)
        return None

    def _canary_failure(self, reason: str, error: BaseException) -> PollError:
        text = describe(error)
        if reason == "no_bucket":
            return PollError(
                Reason.OTHER, f"bucket {self.ctx.config.bucket!r} does not exist (NoSuchBucket)"
            )
        if reason == "auth":
            info = client_error(error)
            code = info[0] if info else ""
            if code in PERMISSION_CODES:
                return PollError(Reason.PERMISSION, f"canary PUT refused: {text}")
            return PollError(Reason.AUTH, f"canary PUT rejected the credentials: {text}")
        if reason == "timeout":
            return PollError(Reason.TIMEOUT, f"canary PUT timed out: {text}")
        return PollError(Reason.CONNECT, f"canary PUT could not connect: {text}")

    def _note_canary_problem(self, op: str, reason: str, error: BaseException) -> None:
        self.ctx.report(
            "canary",
            f"{op}:{reason}",
            "canary operation failed",
            bucket=self.ctx.config.bucket,
            operation=op,
            reason=reason,
            error=describe(error),
        )

    def _remember(self, key: str) -> None:
        self.pending[key] = None
        limit = self.ctx.config.canary.max_pending_deletes
        if len(self.pending) > limit:
            dropped = len(self.pending) - limit
            for old in list(self.pending)[:dropped]:
                del self.pending[old]
            self.ctx.report(
                "pending_overflow",
                "overflow",
                "too many canary objects awaiting deletion; forgetting the oldest (the "
                "lifecycle rule on the prefix removes them)",
                bucket=self.ctx.config.bucket,
                limit=limit,
            )

    async def _retry_pending(self, limit: int) -> None:
        """Delete keys left by earlier polls, oldest first; stop at the first failure."""
        s3, bucket = self.ctx.s3, self.ctx.config.bucket
        for key in list(self.pending)[:limit]:
            if key not in self.pending:
                continue

            def delete(key: str = key) -> None:
                s3.delete_object(Bucket=bucket, Key=key)

            future = await self.ctx.submit(delete)
            future.add_done_callback(_retrieve)  # also when nobody waits any more
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.cleanups["failed"] += 1
                return
            self.pending.pop(key, None)
            self.cleanups["deleted"] += 1
        if not self.pending:
            self.ctx.reported.pop("pending_overflow", None)


def families(t: str, bucket: str, part: CanaryPart) -> list[Metric]:
    out: list[Metric] = []
    out.append(
        histogram_family(
            "sparki_s3_probe_duration_seconds",
            "Canary operations on a small object the exporter writes and removes "
            "(successful operations only)",
            ["target", "bucket", "operation"],
            (([t, bucket, op], h) for op, h in part.histograms),
        )
    )
    probes = CounterMetricFamily(
        "sparki_s3_probes",
        "Canary operations attempted",
        labels=["target", "bucket", "operation"],
    )
    for op, count in part.probes:
        probes.add_metric([t, bucket, op], count)
    errors = CounterMetricFamily(
        "sparki_s3_probe_errors",
        "Canary operations failed, by reason (timeout, connect, auth, no_bucket, "
        "throttled, checksum, other)",
        labels=["target", "bucket", "operation", "reason"],
    )
    for op, reason, count in part.probe_errors:
        errors.add_metric([t, bucket, op, reason], count)
    pending = GaugeMetricFamily(
        "sparki_s3_canary_pending_deletes",
        "Canary objects whose DELETE has not succeeded yet; retried every poll",
        labels=["target", "bucket"],
    )
    pending.add_metric([t, bucket], part.pending_deletes)
    cleanups = CounterMetricFamily(
        "sparki_s3_canary_cleanups",
        "Retried deletions of canary objects left by earlier polls, by result",
        labels=["target", "bucket", "result"],
    )
    for result, count in part.cleanups:
        cleanups.add_metric([t, bucket, result], count)
    out += [probes, errors, pending, cleanups]
    return out
