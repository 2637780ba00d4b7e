"""The ``statements`` collector: pg_stat_statements as latency histograms and top-N series.

The statement latency histogram is derived, not sampled: pg_stat_statements keeps
cumulative ``calls`` and ``total_exec_time`` per statement, so between two polls a
statement contributes Δcalls observations at Δtime/Δcalls (spread over the buckets by
:mod:`.estimator`). A statement's first sight is only a baseline. Anything that makes
the counters jump backwards or start over (``pg_stat_statements_reset()``, eviction of
entries, a new ``stats_reset``) turns the affected entries back into baselines instead
of observations, so resets can never produce negative, duplicated or huge observations.

The exporter's own statements are left out by queryid (:mod:`.own`, learned by the
target); rows other roles' privileges hide are counted as hidden. A missing preload,
extension or privilege is the ``pg_stat_statements`` capability (0, one log line with
the fix), not a collector failure: the rest of the part (tracked 0) is still exported.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg import AsyncConnection

from ...logs import kv
from ...metrics import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramSnapshot,
    HistogramState,
    Metric,
    histogram_family,
    mark_static,
)
from . import batch
from .batch import run_batch
from .config import PostgresConfig
from .estimator import spread, sum_of_squares
from .own import OwnStatements
from .queries import one
from .queries import rows as fetch_rows

log = logging.getLogger("sparki.postgres")

# Whether pg_stat_statements can be read here: the preload (NULL when pg_settings hides
# it from this role: unknown, so assumed), the extension in this database, its name.
STATUS_SQL = (
    "SELECT (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), "
    "EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'), "
    "current_database()"
)


def statements_sql(version: int) -> str:
    """pg_stat_statements without query text, for PostgreSQL 12 to 18.

    13 renamed total_time, stddev_time, min_time and max_time to ``*_exec_time``; 14
    added ``toplevel`` (nested statements would count their time twice); 17 added
    ``stats_since``, which tells exactly when an entry was (re)created, so evictions are
    detected without guessing. (1.11/1.12 in 17/18 renamed blk_* timing columns and
    added parallel-worker and WAL columns, none of which are read here.) Rows whose
    ``queryid`` is NULL are other roles' statements hidden from a role without
    ``pg_read_all_stats``: they are returned so they can be counted as hidden.
    """
    col = "exec_time" if version >= 130000 else "time"
    since = "s.stats_since" if version >= 170000 else "NULL::timestamptz"
    toplevel = "WHERE s.toplevel" if version >= 140000 else ""
    # Only constants are interpolated.
    return (
        "SELECT s.userid::int8, s.dbid::int8, s.queryid, s.calls, "  # noqa: S608
        f"s.total_{col}, s.stddev_{col}, s.min_{col}, s.max_{col}, d.datname, {since} "
        f"FROM pg_stat_statements(false) s JOIN pg_database d ON d.oid = s.dbid {toplevel}"
    )


def statements_info_sql(version: int) -> str | None:
    """pg_stat_statements_info exists from 14 on: eviction count and last full reset."""
    return "SELECT dealloc, stats_reset FROM pg_stat_statements_info" if version >= 140000 else None


TEXTS_SQL = (
    "SELECT DISTINCT ON (dbid, queryid) dbid::int8, queryid, query "
    "FROM pg_stat_statements(true) WHERE queryid = ANY(%s)"
)
MINMAX_RESET_SQL = "SELECT pg_stat_statements_reset(0, 0, 0, true)"

# Every literal form PostgreSQL accepts: '...' with any prefix (E'' with backslash
# escapes, U&'', B'', X'', N''), and $tag$...$tag$ with any tag ($1 is a parameter, not
# a quote: a tag cannot start with a digit). An unterminated literal runs to the end.
# Comments are dropped too (they can hold anything). Quoted identifiers are matched
# only to be kept whole, so a quote inside one does not start a literal.
_LITERAL = re.compile(
    r"""(?isx)
    (?P<ident>"(?:[^"]|"")*"?)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|$))
    | (?<![\w$])E'(?:[^'\\]|\\.|'')*(?:'|$)              # E'...': backslash escapes
    | (?<![\w$])(?:U&|[BXN])?'(?:[^']|'')*(?:'|$)      # '...', U&'...', B'', X'', N''
    | (?<![\w$])\$(?P<tag>[A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$.*?(?:\$(?P=tag)\$|$)
    """
)


def _blank(match: re.Match[str]) -> str:
    if match.group("ident"):
        return match.group("ident")
    return " " if match.group("comment") else "'?'"


_SPACE = re.compile(r"\s+")
# Utility statements that set a password are shown as a placeholder whatever their
# syntax: a password written as something the literal scan does not expect must not
# reach a label.
_PASSWORD_STATEMENT = re.compile(
    r"(?is)(?:^|;)\s*(CREATE|ALTER)\s+(ROLE|USER|GROUP)\b[^;]*\bPASSWORD\b"
)
PASSWORD_PLACEHOLDER = "{verb} ROLE ... PASSWORD <hidden>"  # noqa: S105


def clean_query_text(text: str, limit: int) -> str:
    """Normalize a statement for a label: one line, no literals, bounded length.

    pg_stat_statements replaces constants with $n in planned statements, but utility
    statements (``ALTER ROLE ... PASSWORD $$...$$``) keep their text verbatim, so every
    literal form is blanked here and password-setting statements become a fixed
    placeholder: a label must never carry a secret.
    """
    text = _SPACE.sub(" ", _LITERAL.sub(_blank, text)).strip()
    match = _PASSWORD_STATEMENT.search(text)
    if match:
        return PASSWORD_PLACEHOLDER.format(verb=match.group(1).upper())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def own_sql(config: PostgresConfig, version: int) -> list[tuple[str, Any]]:
    """Every statement this collector may run on ``version``, with example parameters."""
    sql: list[tuple[str, Any]] = [
        (STATUS_SQL, None),
        (statements_sql(version), None),
        (TEXTS_SQL, ([0],)),
    ]
    info = statements_info_sql(version)
    if info:
        sql.append((info, None))
    if version >= 170000 and config.statements_minmax_reset:
        sql.append((MINMAX_RESET_SQL, None))
    return sql


# One pg_stat_statements entry as read: calls, total ms, stddev ms, stats_since, min ms,
# max ms.
Entry = tuple[int, float, float, Any, float, float]


def preloaded(setting: str | None) -> bool:
    """Whether shared_preload_libraries (None: not readable) loads pg_stat_statements."""
    return setting is None or "pg_stat_statements" in [p.strip() for p in setting.split(",")]


class StatementSeries(NamedTuple):
    """One statement's counters (a NamedTuple: thousands are made every poll)."""

    datname: str
    queryid: str  # a decimal queryid, or "other"
    calls: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Part:
    """What one poll learned from pg_stat_statements, immutable."""

    available: bool
    histograms: tuple[tuple[str, HistogramSnapshot], ...]
    statements: tuple[StatementSeries, ...]
    texts: tuple[tuple[str, str, str], ...]  # datname, queryid, text
    tracked: int
    deallocated: int | None
    # reason -> entries left out: "own" (the exporter's statements), "role" (the
    # exclude_own_role option), "privilege" (other roles' rows hidden from this role).
    hidden: tuple[tuple[str, int], ...] = ()


class Collector:
    """Per target, across polls: the previous counters deltas are computed from."""

    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        # Set by the target: which statements are its own (None: none are recognized).
        self.own: OwnStatements | None = None
        self.histograms: dict[str, HistogramState] = {}
        # (userid, dbid, queryid) -> the entry as last read
        self.previous: dict[tuple[int, int, int], Entry] | None = None
        self.previous_reset: Any = None
        self.previous_dealloc: int | None = None
        # (datname, queryid) -> (datname, the queryid as text, [calls, seconds]) for the
        # top N, in the order they are exported
        self.top: dict[tuple[str, int], tuple[str, str, list[float]]] = {}
        self.datnames: dict[int, str] = {}  # dbid -> datname, as of the last poll
        self.dbids: dict[str, int] = {}
        self.other: dict[str, list[float]] = {}
        self.texts: dict[tuple[int, int], str] = {}  # (dbid, queryid) -> cleaned text
        # The part's texts as last built; None when the top N or the texts changed since.
        self.texts_part: tuple[tuple[str, str, str], ...] | None = None
        self.text_keys: dict[tuple[str, int], tuple[int, int]] = {}  # top-N -> texts key
        # Statements ranked N+1 to 2N: their text is fetched ahead, with the top-N's, so
        # one that climbs into the top N usually has its text already.
        self.text_ahead: set[tuple[int, int]] = set()
        self.last_text_fetch: float | None = None
        self.reported_problem: str | None = None
        self.reported_hidden: dict[str, int] = {}
        self.hidden: dict[str, int] = {}
        self.privilege_hidden_before = False
        self.minmax_refused = False

    async def collect(self, conn: AsyncConnection[Any], version: int) -> Part:
        read = await self._read_pipelined(conn, version)
        if read is not None:
            available, tracked, dealloc = await self._use(conn, version, *read)
        else:
            preload, has_ext, dbname = await one(conn, STATUS_SQL)
            available, tracked, dealloc = await self._statements(
                conn, version, preload, bool(has_ext), str(dbname)
            )
        statements: list[StatementSeries] = []
        texts: tuple[tuple[str, str, str], ...] = ()
        if available:
            statements += [
                StatementSeries(d, qs, int(v[0]), v[1]) for d, qs, v in self.top.values()
            ]
            statements += [
                StatementSeries(d, "other", int(v[0]), v[1]) for d, v in sorted(self.other.items())
            ]
            if self.texts_part is None:
                text_keys, known = self.text_keys, self.texts
                found = []
                for agg, (d, qs, _) in self.top.items():
                    key = text_keys.get(agg)
                    if key is not None and key in known:
                        found.append((d, qs, known[key]))
                self.texts_part = tuple(found)
            texts = self.texts_part
        return Part(
            available=available,
            histograms=tuple((d, h.snapshot()) for d, h in sorted(self.histograms.items())),
            statements=tuple(statements),
            texts=texts,
            tracked=tracked,
            deallocated=dealloc,
            hidden=tuple(sorted(self.hidden.items())) if available else (),
        )

    def _problem(self, problem: str | None, dbname: str) -> None:
        """Log once per change why pg_stat_statements is unavailable, and how to fix it."""
        if problem == self.reported_problem:
            return
        self.reported_problem = problem
        if problem is None:
            log.info("pg_stat_statements available", extra=kv(target=self.config.name))
            return
        fixes = {
            "not_preloaded": "add pg_stat_statements to shared_preload_libraries in "
            "postgresql.conf and restart PostgreSQL",
            "extension_missing": f"run CREATE EXTENSION pg_stat_statements; in database {dbname}",
            "permission": "GRANT pg_monitor (or pg_read_all_stats) TO the exporter's role",
        }
        log.warning(
            "pg_stat_statements unavailable: statement metrics disabled, the rest continues",
            extra=kv(target=self.config.name, problem=problem, fix=fixes.get(problem, problem)),
        )

    async def _statements(
        self,
        conn: AsyncConnection[Any],
        version: int,
        preload: str | None,
        has_ext: bool,
        dbname: str,
    ) -> tuple[bool, int, int | None]:
        if not preloaded(preload):
            self._problem("not_preloaded", dbname)
            return False, 0, None
        if not has_ext:
            self._problem("extension_missing", dbname)
            return False, 0, None
        own = self.own
        if own is not None and own.retry and self.config.exclude_own_statements:
            await own.learn(conn)  # the extension appeared since
        try:
            # pg_stat_statements_info is read before and after the rows: a reset in
            # between would leave rows and stats_reset from different sides of it.
            info_sql = statements_info_sql(version)
            _, reset_before = (await one(conn, info_sql)) if info_sql else (None, None)
            rows = await fetch_rows(conn, statements_sql(version), binary=True)
            dealloc, stats_reset = (await one(conn, info_sql)) if info_sql else (None, None)
        except psycopg.errors.InsufficientPrivilege:
            self._problem("permission", dbname)
            return False, 0, None
        except psycopg.errors.ObjectNotInPrerequisiteState:
            self._problem("not_preloaded", dbname)
            return False, 0, None
        self._problem(None, dbname)
        return await self._use(conn, version, rows, reset_before, stats_reset, dealloc)

    async def _read_pipelined(
        self, conn: AsyncConnection[Any], version: int
    ) -> tuple[list[tuple[Any, ...]], Any, Any, Any] | None:
        """Once pg_stat_statements has been read, the status check and the reads run
        in one round trip instead of four: (rows, reset before, reset after, dealloc).

        None when that is not possible (no complete poll yet, a server before 14, the
        exporter's own statements still to be learned) or anything failed: then the
        step-by-step read runs and tells what is wrong, as it always has.
        """
        own = self.own
        info_sql = statements_info_sql(version)
        if (
            self.previous is None
            or self.reported_problem is not None
            or info_sql is None
            or not batch.PIPELINE
            or (own is not None and own.retry and self.config.exclude_own_statements)
        ):
            return None
        sql = statements_sql(version)
        out = await run_batch(
            conn, [("status", [STATUS_SQL]), ("read", [info_sql, sql, info_sql])], binary={sql}
        )
        if out.error is not None and (conn.closed or conn.broken):
            raise out.error  # the connection is gone: the poll fails, as it would alone
        if set(out.done) != {"status", "read"}:
            return None
        preload, has_ext, _ = out.done["status"][0][0]
        if not has_ext or not preloaded(preload):
            return None  # the step-by-step read says why, once
        before, rows, after = out.done["read"]
        return rows, before[0][1], after[0][1], after[0][0]

    async def _use(
        self,
        conn: AsyncConnection[Any],
        version: int,
        rows: list[tuple[Any, ...]],
        reset_before: Any,
        stats_reset: Any,
        dealloc: Any,
    ) -> tuple[bool, int, int | None]:
        """One complete read: into the histograms and the top N, then the texts."""
        if reset_before != stats_reset:
            # Reset during the read: skip this poll's rows. The next one sees the new
            # stats_reset against the last complete poll and counts from zero.
            return True, len(rows), (int(dealloc) if dealloc is not None else None)
        self._apply_statements(rows, stats_reset, dealloc)
        self._report_hidden()
        if self.config.statements_minmax_reset and version >= 170000 and not self.minmax_refused:
            try:
                await conn.execute(MINMAX_RESET_SQL.encode())
            except psycopg.errors.InsufficientPrivilege:
                self.minmax_refused = True
                log.warning(
                    "statements_minmax_reset is on but the role may not reset "
                    "pg_stat_statements: min/max stay cumulative",
                    extra=kv(
                        target=self.config.name,
                        fix="GRANT EXECUTE ON FUNCTION pg_stat_statements_reset(oid, oid, "
                        "bigint, boolean) TO the exporter's role, or turn the option off",
                    ),
                )
        await self._fetch_texts(conn)
        return True, len(rows), (int(dealloc) if dealloc is not None else None)

    def _report_hidden(self) -> None:
        """One log line when a reason for hiding statements appears (or goes away)."""
        fixes = {
            "own": "nothing to do: these are the exporter's own queries",
            "role": "exclude_own_role is on: every statement of the exporter's role is "
            "left out; give the exporter a role of its own, or turn the option off",
            "privilege": "GRANT pg_monitor (or pg_read_all_stats) TO the exporter's role: "
            "other roles' statements are hidden from it, so latency alerts cannot see them",
            "unrecognized": "the exporter cannot tell its own statements apart "
            "(PostgreSQL before 14, or compute_query_id = off): they are left out by "
            "role; give the exporter a role of its own",
        }
        for reason in sorted(set(self.hidden) | set(self.reported_hidden)):
            now = self.hidden.get(reason, 0) > 0
            if now == (self.reported_hidden.get(reason, 0) > 0):
                continue
            self.reported_hidden[reason] = self.hidden.get(reason, 0)
            if not now:
                log.info(
                    "pg_stat_statements rows no longer hidden",
                    extra=kv(target=self.config.name, reason=reason),
                )
            elif reason == "own":
                log.info(
                    "left the exporter's own statements out of the latency histograms",
                    extra=kv(
                        target=self.config.name, reason=reason, statements=self.hidden[reason]
                    ),
                )
            else:
                log.warning(
                    "pg_stat_statements rows hidden: they are not in the latency histograms",
                    extra=kv(
                        target=self.config.name,
                        reason=reason,
                        statements=self.hidden[reason],
                        fix=fixes[reason],
                    ),
                )

    def _apply_statements(
        self, rows: Iterable[tuple[Any, ...]], stats_reset: Any, dealloc: Any
    ) -> None:
        """Turn one poll's rows into histogram observations and top-N counters.

        This runs for every entry on every poll (3,000 and more on busy servers), so
        the loop is kept lean: the SQL casts fix the column types (int8, bigint,
        double precision), an entry nobody called since the last poll costs one dict
        lookup, and an entry called once goes straight into its bucket (a single call
        has no spread to estimate).
        """
        # Only the exporter's first poll is a baseline. After that, an entry absent from
        # the previous complete poll is new (first call, or re-created after a reset or
        # an eviction): every call it shows happened since, so all of them count. The
        # exception: rows that were hidden by privilege and are visible now (a GRANT)
        # carry their whole history, so they start as baselines.
        first_poll = self.previous is None
        full_reset = (
            not first_poll
            and self.previous_reset is not None
            and stats_reset != self.previous_reset
        )
        previous = {} if full_reset or self.previous is None else self.previous
        # Entries called since the previous poll (or new): (key, entry, previous entry).
        changed: list[tuple[tuple[int, int, int], Entry, Entry | None]] = []
        # (userid, dbid, queryid) -> (calls, total ms, stddev ms, stats_since, min ms, max ms)
        current: dict[tuple[int, int, int], Entry] = {}
        datnames: dict[int, str] = {}
        totals: dict[tuple[str, int], float] = {}
        hidden = {"own": 0, "role": 0, "privilege": 0, "unrecognized": 0}
        own = self.own
        own_user = own.user if own is not None else None
        own_known = own is not None and own.recognizable
        exclude_own = self.config.exclude_own_statements
        exclude_role = self.config.exclude_own_role
        for userid, dbid, queryid, calls, total_ms, sd_ms, min_ms, max_ms, datname, since in rows:
            if queryid is None:
                hidden["privilege"] += 1  # another role's row, hidden from this role
                continue
            if own_user is not None and userid == own_user:
                if exclude_own:
                    if own_known:
                        if own is not None and own.is_own(userid, dbid, queryid):
                            hidden["own"] += 1
                            continue
                    else:
                        hidden["unrecognized"] += 1
                        continue
                if exclude_role:
                    hidden["role"] += 1
                    continue
            key = (userid, dbid, queryid)
            entry = (calls, total_ms, sd_ms or 0.0, since, min_ms or 0.0, max_ms or 0.0)
            current[key] = entry
            datnames[dbid] = datname
            agg = (datname, queryid)
            totals[agg] = totals.get(agg, 0.0) + total_ms
            if first_poll:
                continue
            before = previous.get(key)
            if (
                before is not None
                and calls == before[0]
                and since == before[3]
                and total_ms >= before[1]
            ):
                continue  # not called since the previous poll: nothing more to do
            changed.append((key, entry, before))
        self.hidden = {k: v for k, v in hidden.items() if v}

        # Top-N by cumulative time; their own series, the rest summed under "other".
        # The statements ranked N+1 to 2N are fetched ahead (their texts).
        n = self.config.statements_top_n
        if len(totals) <= n:
            top, ahead = set(totals), set()
        else:
            # Largest first; ties (rare between float totals) keep the server's order
            # (a stable sort, in C: cheaper than a heap for a few thousand entries).
            ranked = sorted(totals, key=totals.__getitem__, reverse=True)[: 2 * n]
            top, ahead = set(ranked[:n]), set(ranked[n:])
        # The top N changes at its edge only: the statements that left or joined it are
        # updated, in place. A database's name and oid are one to one (the rows are
        # joined to pg_database), so a top statement's text key follows from its name.
        if datnames != self.datnames:
            self.texts_part = None
            self.datnames = datnames
            self.dbids = {name: dbid for dbid, name in datnames.items()}
            self.text_keys = {(d, q): (self.dbids[d], q) for d, q in self.top.keys() & top}
        if top != self.top.keys():
            self.texts_part = None
            for k in self.top.keys() - top:
                del self.top[k]
                self.text_keys.pop(k, None)
            for k in top - self.top.keys():
                self.top[k] = (k[0], str(k[1]), [0, 0.0])
                self.text_keys[k] = (self.dbids[k[0]], k[1])
        self.text_ahead = {(self.dbids[d], q) for d, q in ahead}
        for datname in set(datnames.values()):
            self.histograms.setdefault(datname, HistogramState(self.config.statement_buckets))
            self.other.setdefault(datname, [0, 0.0])

        # A role without pg_read_all_stats that was granted it: hidden rows went to none.
        new_counts = not (self.privilege_hidden_before and not hidden["privilege"])
        zero: Entry = (0, 0.0, 0.0, None, 0.0, 0.0)
        buckets = self.config.statement_buckets
        histograms, top_series, other = self.histograms, self.top, self.other
        for key, entry, before in changed:
            calls, total_ms, sd_ms, since, low, high = entry
            if before is None:
                if not new_counts and not full_reset:
                    continue
                before = zero
            elif since != before[3] or calls < before[0] or total_ms < before[1]:
                # Re-created since the previous poll (per-entry reset, eviction): its
                # counters are all from after that, as for a new entry.
                before = zero
            d_calls = calls - before[0]
            d_ms = total_ms - before[1]
            if d_calls <= 0 or d_ms < 0:
                continue
            datname = datnames[key[1]]
            seconds = d_ms / 1000.0
            if d_calls == 1:
                # One call: it took exactly the interval's time.
                if not histograms[datname].observe(seconds):
                    continue
            else:
                d_squares = sum_of_squares(calls, total_ms, sd_ms) - sum_of_squares(
                    before[0], before[1], before[2]
                )
                counts = spread(
                    d_calls,
                    seconds,
                    max(d_squares, 0.0) / 1e6,
                    low / 1000.0,
                    high / 1000.0,
                    buckets,
                )
                if not histograms[datname].add_counts(counts, seconds):
                    continue
            agg = (datname, key[2])
            exported = top_series.get(agg)
            bucket = exported[2] if exported is not None else other[datname]
            bucket[0] += d_calls
            bucket[1] += seconds
        # Texts of statements gone from pg_stat_statements are dropped; the set of
        # entries rarely changes between polls, so that is checked first (in C).
        if self.texts and (self.previous is None or current.keys() != self.previous.keys()):
            live = {(dbid, queryid) for _, dbid, queryid in current}
            kept = {k: v for k, v in self.texts.items() if k in live}
            if len(kept) != len(self.texts):
                self.texts, self.texts_part = kept, None
        self.previous = current
        self.previous_reset = stats_reset
        self.previous_dealloc = int(dealloc) if dealloc is not None else None
        self.privilege_hidden_before = hidden["privilege"] > 0

    async def _fetch_texts(self, conn: AsyncConnection[Any]) -> None:
        """Fetch text only for newly seen top statements: reading it costs ~20x more.

        PostgreSQL reads the whole texts file for any ``pg_stat_statements(true)``
        call, whatever the WHERE clause, so the cost is per fetch, not per statement.
        Fetches are therefore batched: the statements just below the top N come along,
        and after the first fetch at most one runs per ``query_text_refresh``. A
        statement new to the top N may go without its ``statement_info`` until then;
        its latency and counters are exported from the start.
        """
        missing = set(self.text_keys.values()) - set(self.texts)
        if not missing:
            return
        now = time.monotonic()
        if (
            self.last_text_fetch is not None
            and now - self.last_text_fetch < self.config.query_text_refresh
        ):
            return
        self.last_text_fetch = now
        missing |= self.text_ahead - set(self.texts)
        queryids = sorted({q for _, q in missing})
        rows = await fetch_rows(conn, TEXTS_SQL, (queryids,))
        self.texts_part = None
        for dbid, queryid, query in rows:
            if (int(dbid), int(queryid)) in missing and query is not None:
                self.texts[(int(dbid), int(queryid))] = clean_query_text(
                    str(query), self.config.query_text_length
                )


# statement_info changes only when the top N or its texts do, and the collector then
# builds a new texts tuple: until it does, the family (a few thousand long labels at a
# high top_n, a third of a poll's rendering) is built and rendered once, not per poll.
# Keyed by target, checked by identity, bounded (targets come and go with reloads).
_INFO_CACHE: dict[str, tuple[tuple[tuple[str, str, str], ...], Metric]] = {}
_INFO_CACHE_MAX = 256


def _info_family(texts: tuple[tuple[str, str, str], ...], target: str) -> Metric:
    hit = _INFO_CACHE.get(target)
    if hit is not None and hit[0] is texts:
        return hit[1]
    info = GaugeMetricFamily(
        "sparki_postgres_statement_info",
        "Normalized, truncated text of the top-N statements; always 1",
        labels=["target", "datname", "queryid", "query"],
    )
    for datname, queryid, text in texts:
        info.add_metric([target, datname, queryid, text], 1)
    mark_static(info)
    _INFO_CACHE.pop(target, None)
    if len(_INFO_CACHE) >= _INFO_CACHE_MAX:
        _INFO_CACHE.pop(next(iter(_INFO_CACHE)))
    _INFO_CACHE[target] = (texts, info)
    return info


def families(part: Part, target: str) -> list[Metric]:
    t = target
    out: list[Metric] = [
        histogram_family(
            "sparki_postgres_statement_duration_seconds",
            "Per-call execution time derived from pg_stat_statements deltas between polls",
            ["target", "datname"],
            (([t, d], h) for d, h in part.histograms),
        )
    ]
    calls = CounterMetricFamily(
        "sparki_postgres_statement_calls",
        'Calls of the top-N statements by time since first seen; the rest under queryid="other"',
        labels=["target", "datname", "queryid"],
    )
    secs = CounterMetricFamily(
        "sparki_postgres_statement_seconds",
        "Execution time of the top-N statements since first seen",
        labels=["target", "datname", "queryid"],
    )
    for s in part.statements:
        calls.add_metric([t, s.datname, s.queryid], s.calls)
        secs.add_metric([t, s.datname, s.queryid], s.seconds)
    out += [calls, secs, _info_family(part.texts, t)]

    tracked = GaugeMetricFamily(
        "sparki_postgres_statements_tracked",
        "Entries currently in pg_stat_statements",
        labels=["target"],
    )
    tracked.add_metric([t], part.tracked)
    out.append(tracked)
    if part.deallocated is not None:
        dealloc = CounterMetricFamily(
            "sparki_postgres_statements_deallocated",
            "Times pg_stat_statements evicted entries; raise pg_stat_statements.max if it grows",
            labels=["target"],
        )
        dealloc.add_metric([t], part.deallocated)
        out.append(dealloc)

    cap = GaugeMetricFamily(
        "sparki_capability",
        "1 when an optional data source is usable, 0 when it is not "
        "(the log says why and how to fix it)",
        labels=["adapter", "target", "capability"],
    )
    # Rows hidden by privilege make the histograms partial: the capability says so.
    complete = part.available and not dict(part.hidden).get("privilege")
    cap.add_metric(["postgres", t, "pg_stat_statements"], 1 if complete else 0)
    out.append(cap)
    hidden = GaugeMetricFamily(
        "sparki_postgres_statements_hidden",
        "pg_stat_statements entries left out of the statement metrics, by reason: own "
        "(the exporter's queries), role (exclude_own_role), privilege (other roles' rows "
        "hidden without pg_read_all_stats), unrecognized (own statements left out by role)",
        labels=["target", "reason"],
    )
    if part.available:
        counts = dict(part.hidden)
        for reason in ("own", "role", "privilege", "unrecognized"):
            hidden.add_metric([t, reason], counts.get(reason, 0))
    out.append(hidden)
    return out
