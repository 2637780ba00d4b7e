"""Collector ``statements``: statement latency from performance_schema digests.

``events_statements_summary_by_digest`` keeps, per (schema, digest), cumulative
``COUNT_STAR`` and ``SUM_TIMER_WAIT`` (picoseconds) and lifetime ``MIN``/``MAX``.
Between two polls a digest contributes Δcalls observations summing to Δtime. Where
``events_statements_histogram_by_digest`` exists (MySQL 8.0+) the interval's calls go
into the buckets the server measured; MariaDB has no such table, so they are spread
over [min, max] by the PostgreSQL adapter's Beta estimator (see exporter/adapters/
postgres/estimator.py), with the coefficient of variation taken as 1 since the table
keeps no sum of squares (docs/mysql.md says what that costs).

Resets are safe: the first poll is a baseline; a row absent from the previous poll is
new (all its calls happened since); a row whose FIRST_SEEN changed or whose counters
went backwards was re-created (TRUNCATE TABLE, a server restart) and counts from zero;
a server restart (Uptime went down) makes every row new. When the table is full
(performance_schema_digests_size), MariaDB and MySQL put further statements in one row
with a NULL digest: it is counted under ``digest="other"``, and
``sparki_mysql_statement_digests_lost_total`` says it happens.

The exporter's own statements are left out by digest: every SELECT it runs carries the
column alias ``sparki_exporter``, which survives into DIGEST_TEXT, and its SHOW/SET
statements are recognized by their digest text, learned once per digest.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...logs import kv
from ...metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
)
from ..postgres.estimator import spread
from .config import MysqlConfig
from .context import Context, fetch
from .errors import PERMISSION_CODES, code_of

log = logging.getLogger("sparki.mysql")

MARKER = "sparki_exporter"
PICO = 1e12
NO_SCHEMA = "(none)"
DIGEST_SQL = (
    "SELECT SCHEMA_NAME, DIGEST, COUNT_STAR, SUM_TIMER_WAIT, MIN_TIMER_WAIT, "
    "MAX_TIMER_WAIT, FIRST_SEEN AS sparki_exporter "
    "FROM performance_schema.events_statements_summary_by_digest"
)
TEXT_SQL = (
    "SELECT SCHEMA_NAME, DIGEST, DIGEST_TEXT AS sparki_exporter "
    "FROM performance_schema.events_statements_summary_by_digest WHERE DIGEST IN ({})"
)
HAS_HISTOGRAM_SQL = (
    "SELECT COUNT(*) AS sparki_exporter FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = 'performance_schema' "
    "AND TABLE_NAME = 'events_statements_histogram_by_digest'"
)
HISTOGRAM_SQL = (
    "SELECT SCHEMA_NAME, DIGEST, BUCKET_TIMER_HIGH, COUNT_BUCKET AS sparki_exporter "
    "FROM performance_schema.events_statements_histogram_by_digest WHERE COUNT_BUCKET > 0"
)
# Digest texts of the statements the exporter runs that cannot carry the marker.
OWN_TEXTS = frozenset(
    {
        "SHOW GLOBAL STATUS",
        "SHOW ALL SLAVES STATUS",
        "SHOW ALL REPLICAS STATUS",
        "SHOW SLAVE STATUS",
        "SHOW REPLICA STATUS",
        "SET SESSION MAX_STATEMENT_TIME = ?",
        "SET SESSION `max_execution_time` = ?",
        "SET SESSION MAX_EXECUTION_TIME = ?",
        "SET AUTOCOMMIT = ?",
        "SET `autocommit` = ?",
        "SET NAMES `utf8mb4`",
        "SET NAMES `utf8`",
    }
)
_SPACE = re.compile(r"\s+")
_PASSWORD = re.compile(r"(?i)\b(IDENTIFIED|PASSWORD)\b")
PASSWORD_PLACEHOLDER = "<statement with a password, hidden>"  # noqa: S105

Key = tuple[str, str | None]  # (schema, digest); digest None = the overflow row


def normalized(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def is_own(text: str) -> bool:
    """Whether a digest text is one of the exporter's own statements."""
    t = normalized(text)
    return MARKER in t or t.upper() in {o.upper() for o in OWN_TEXTS}


def clean_text(text: str, limit: int) -> str:
    """A digest text for a label: one line, bounded, and never a password statement.

    Digest texts already have every literal replaced by ``?``; statements that set a
    password are still replaced by a placeholder, as a second line of defence.
    """
    t = normalized(text)
    if _PASSWORD.search(t):
        return PASSWORD_PLACEHOLDER
    return t if len(t) <= limit else t[: limit - 3] + "..."


def rebucket(deltas: Iterable[tuple[float, int]], bounds: Sequence[float]) -> list[int]:
    """Server buckets (upper edge in seconds, calls) into the exporter's buckets.

    A server bucket goes where its upper edge falls, so a call is never placed below
    its true duration; MySQL's buckets are about 4 % wide, so that is the error.
    """
    counts = [0] * (len(bounds) + 1)
    for high, n in deltas:
        if n > 0:
            counts[bisect.bisect_left(bounds, high)] += n
    return counts


def rescale(counts: Sequence[int], n: int) -> list[int]:
    """Bucket counts scaled to ``n`` calls, keeping their shape.

    The histogram and the summary table are read by two statements: calls that finish
    in between are in one reading and not yet in the other. The summary's count is the
    one the calls counter uses, so the buckets are scaled to it (rounded on the
    cumulative, so the result is non-negative and sums to ``n``): ``_count`` stays
    equal to the calls counted, and the next interval evens the difference out.
    """
    total = sum(counts)
    out: list[int] = []
    done = seen = 0
    for c in counts:
        seen += c
        upto = round(n * seen / total)
        out.append(upto - done)
        done = upto
    return out


@dataclass(frozen=True, slots=True)
class Statement:
    schema: str
    digest: str  # hex, or "other"
    calls: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Part:
    available: bool
    histograms: tuple[tuple[str, HistogramSnapshot], ...] = ()
    statements: tuple[Statement, ...] = ()
    texts: tuple[tuple[str, str, str], ...] = ()  # schema, digest, text
    tracked: int = 0
    own: int = 0
    lost: int | None = None
    real_buckets: bool = False


class Collector:
    """Keeps the previous reading of every digest and the accumulated histograms."""

    def __init__(self, config: MysqlConfig) -> None:
        self.config = config
        self.bounds = tuple(config.statement_buckets)
        self.previous: dict[Key, tuple[int, int, Any]] | None = None
        self.previous_hist: dict[Key, dict[int, int]] = {}
        self.previous_uptime = 0.0
        self.own: set[Key] = set()
        self.known: set[Key] = set()
        self.texts: dict[Key, str] = {}
        self.histograms: dict[str, HistogramState] = {}
        self.top: dict[Key, list[float]] = {}
        self.other: dict[str, list[float]] = {}
        self.has_histogram: bool | None = None
        self.reported: str | None = None

    def problem(self, problem: str | None) -> None:
        """Log once per change why statement latency is unavailable, and the fix."""
        if problem == self.reported:
            return
        self.reported = problem
        if problem is None:
            log.info(
                "performance_schema statement digests available", extra=kv(target=self.config.name)
            )
            return
        fixes = {
            "off": "set performance_schema=ON under [mysqld] in the server's config and "
            "restart it (MariaDB has it off by default); the rest of the target is exported",
            "permission": "GRANT SELECT ON performance_schema.* TO the exporter's user",
        }
        log.warning(
            "statement latency unavailable: performance_schema cannot be read",
            extra=kv(target=self.config.name, problem=problem, fix=fixes[problem]),
        )

    async def collect(self, ctx: Context) -> Part:
        if not ctx.performance_schema:
            self.problem("off")
            self.previous = None
            return Part(False, lost=None)
        try:
            rows = await fetch(ctx.conn, DIGEST_SQL)
            if self.has_histogram is None:
                found = await fetch(ctx.conn, HAS_HISTOGRAM_SQL)
                self.has_histogram = bool(found and found[0][0])
            hist_rows = await fetch(ctx.conn, HISTOGRAM_SQL) if self.has_histogram else []
            await self._learn(ctx.conn, rows)
        except Exception as exc:
            if code_of(exc) in PERMISSION_CODES:
                self.problem("permission")
            raise
        self.problem(None)
        uptime = ctx.number("uptime")
        restarted = uptime < self.previous_uptime
        self.previous_uptime = uptime
        self._apply(rows, hist_rows, restarted)
        return self._part(len(rows), ctx)

    async def _learn(self, conn: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Read the text of digests seen for the first time: own or not, and labels."""
        new = {
            (str(r[0] or NO_SCHEMA), str(r[1]))
            for r in rows
            if r[1] is not None
            and (str(r[0] or NO_SCHEMA), str(r[1])) not in self.known
            and (str(r[0] or NO_SCHEMA), str(r[1])) not in self.own
        }
        if not new:
            return
        digests = sorted({d for _, d in new if d})
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            sql = TEXT_SQL.format(", ".join(["%s"] * len(chunk)))
            for schema, digest, text in await fetch(conn, sql, chunk):
                key = (str(schema or NO_SCHEMA), str(digest))
                if key not in new:
                    continue
                if self.config.exclude_own_statements and is_own(str(text or "")):
                    self.own.add(key)
                else:
                    self.known.add(key)
                    self.texts[key] = clean_text(str(text or ""), self.config.query_text_length)

    def _apply(
        self, rows: Sequence[tuple[Any, ...]], hist_rows: Sequence[tuple[Any, ...]], restarted: bool
    ) -> None:
        current: dict[Key, tuple[int, int, Any]] = {}
        bounds: dict[Key, tuple[float, float]] = {}
        totals: dict[Key, int] = {}
        for schema, digest, count, total, low, high, first_seen in rows:
            key: Key = (str(schema or NO_SCHEMA), None if digest is None else str(digest))
            if key in self.own:
                continue
            current[key] = (int(count), int(total), first_seen)
            bounds[key] = (int(low) / PICO, int(high) / PICO)
            if key[1] is not None:
                totals[key] = int(total)
        buckets: dict[Key, dict[int, int]] = {}
        for schema, digest, high, count in hist_rows:
            key = (str(schema or NO_SCHEMA), None if digest is None else str(digest))
            if key in current:
                buckets.setdefault(key, {})[int(high)] = int(count)

        n = self.config.statements_top_n
        top = set(sorted(totals, key=lambda k: (-totals[k], k))[:n]) if n else set()
        self.top = {k: v for k, v in self.top.items() if k in top}
        for k in top:
            self.top.setdefault(k, [0, 0.0])
        self.texts = {k: v for k, v in self.texts.items() if k in current}
        for schema, _ in current:
            self.histograms.setdefault(schema, HistogramState(self.bounds))
            self.other.setdefault(schema, [0, 0.0])

        first = self.previous is None
        previous = {} if restarted or self.previous is None else self.previous
        for key, (count, total, since) in current.items():
            if first:
                break
            before = previous.get(key)
            hist_before = self.previous_hist.get(key, {})
            if before is None or since != before[2] or count < before[0] or total < before[1]:
                before, hist_before = (0, 0, None), {}
            d_calls, d_ps = count - before[0], total - before[1]
            if d_calls <= 0:
                continue
            seconds = d_ps / PICO
            now_hist = buckets.get(key)
            counts: list[int] | None = None
            if now_hist:
                deltas = [(h / PICO, c - hist_before.get(h, 0)) for h, c in now_hist.items()]
                if all(d >= 0 for _, d in deltas):
                    counts = rebucket(deltas, self.bounds)
                    if sum(counts) <= 0:
                        counts = None
                    elif sum(counts) != d_calls:
                        counts = rescale(counts, d_calls)
            if counts is None:
                low, high = bounds[key]
                mean = seconds / d_calls
                # No sum of squares in the table: a coefficient of variation of 1
                # (variance = mean²), bounded by [min, max] inside the estimator.
                counts = spread(d_calls, seconds, 2 * d_calls * mean * mean, low, high, self.bounds)
            if not self.histograms[key[0]].add_counts(counts, seconds):
                continue
            slot = self.top.get(key) or self.other[key[0]]
            slot[0] += d_calls
            slot[1] += seconds
        self.previous = current
        self.previous_hist = buckets
        # Forget digests the table no longer has (TRUNCATE, a restart): memory stays
        # bounded by the table's size, and one that comes back is learned again.
        present = {(str(r[0] or NO_SCHEMA), None if r[1] is None else str(r[1])) for r in rows}
        self.known &= present
        self.own &= present

    def _part(self, tracked: int, ctx: Context) -> Part:
        lost = ctx.number("performance_schema_digest_lost", -1)
        statements = [
            Statement(s, d or "other", int(v[0]), v[1])
            for (s, d), v in sorted(self.top.items(), key=lambda kv_: (kv_[0][0], kv_[0][1] or ""))
        ]
        statements += [
            Statement(s, "other", int(v[0]), v[1]) for s, v in sorted(self.other.items())
        ]
        texts = tuple(
            (s, str(d), self.texts[(s, d)])
            for s, d in sorted(
                (k for k in self.top if k in self.texts), key=lambda k: (k[0], k[1] or "")
            )
        )
        return Part(
            available=True,
            histograms=tuple((s, h.snapshot()) for s, h in sorted(self.histograms.items())),
            statements=tuple(statements),
            texts=texts,
            tracked=tracked,
            own=len(self.own),
            lost=int(lost) if lost >= 0 else None,
            real_buckets=bool(self.has_histogram),
        )


def families(target: str, part: Part) -> list[Metric]:
    out: list[Metric] = [
        histogram_family(
            "sparki_mysql_statement_duration_seconds",
            "Per-call statement latency from performance_schema digest deltas between polls",
            ["target", "schema"],
            (([target, s], h) for s, h in part.histograms),
        )
    ]
    calls = CounterMetricFamily(
        "sparki_mysql_statement_calls",
        'Calls of the top-N digests by time since first seen; the rest under digest="other"',
        labels=["target", "schema", "digest"],
    )
    secs = CounterMetricFamily(
        "sparki_mysql_statement_seconds",
        "Execution time of the top-N digests since first seen",
        labels=["target", "schema", "digest"],
    )
    for st in part.statements:
        calls.add_metric([target, st.schema, st.digest], st.calls)
        secs.add_metric([target, st.schema, st.digest], st.seconds)
    info = GaugeMetricFamily(
        "sparki_mysql_statement_info",
        "Normalized, truncated digest text of the top-N digests; always 1",
        labels=["target", "schema", "digest", "query"],
    )
    for schema, digest, text in part.texts:
        info.add_metric([target, schema, digest, text], 1)
    out += [calls, secs, info]
    if part.available:
        tracked = GaugeMetricFamily(
            "sparki_mysql_statement_digests",
            "Rows in events_statements_summary_by_digest (performance_schema_digests_size caps it)",
            labels=["target"],
        )
        tracked.add_metric([target], part.tracked)
        own = GaugeMetricFamily(
            "sparki_mysql_statement_digests_own",
            "Digests of the exporter's own statements, left out of the statement metrics",
            labels=["target"],
        )
        own.add_metric([target], part.own)
        out += [tracked, own]
    if part.lost is not None:
        lost = CounterMetricFamily(
            "sparki_mysql_statement_digests_lost",
            'Statements that found the digest table full (counted under digest="other"); '
            "raise performance_schema_digests_size if it grows",
            labels=["target"],
        )
        lost.add_metric([target], part.lost)
        out.append(lost)
    return out
