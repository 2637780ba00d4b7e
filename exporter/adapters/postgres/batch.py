"""Collectors whose poll is a fixed list of queries, run together in one round trip.

A poll used to run each collector's statements one after another: about twenty round
trips, each waiting for the server and then for a CPU to read the answer, which on a
busy host is where a poll's time went (docs/benchmarks.md, "The 50 ms poll aim").
Most collectors need no answer to decide what to ask next, so they say what they ask
(``queries``) and how to read the answers (``parse``), and the target sends every
such collector's queries in one pipeline (libpq pipeline mode): one round trip.

One failure must still degrade only its own collector. In a pipeline, a failed
statement aborts every statement after it until the next sync point, and psycopg
raises the first error when the results are read. So the queries run in order, the
first error belongs to the first query without a result, the collectors whose
queries were aborted behind it are run again on their own in the same poll, and the
collector that failed runs on its own (``collect``) in the next polls until it
succeeds, so a missing privilege does not abort the batch every poll.

Prepared statements matter here: planning these queries on the catalog views costs the
server more than running them (a batch takes 2 ms prepared, 5 ms planned every time).
The target's connection prepares every statement on its first run
(``prepare_threshold=0``). That is also what keeps pipelines safe: psycopg records a
statement as prepared when it is queued, and checks that record against the result only
for a statement it sees for the first time; one that reached the threshold after earlier
unprepared runs, queued behind a failure in a pipeline, stays recorded as prepared although
the server never prepared it, and fails every later run ("prepared statement does not
exist"). With a threshold of 0 no statement is ever run unprepared first.

All statements of a batch run in one implicit transaction (the sync ends it), so the
statistics views they read come from one snapshot: consistent with each other, and
each view is still read once per poll.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection

from .queries import in_recovery, rows

Rows = list[tuple[Any, ...]]

# libpq 14+ has pipeline mode; psycopg's binary wheel bundles a recent libpq, a build
# against an older system libpq does not: then every query runs alone, as before.
PIPELINE = psycopg.AsyncPipeline.is_supported()


class QueryCollector:
    """Base of a collector that runs a fixed list of queries, then reads their rows.

    Subclasses define ``queries`` (what to run, given the server version and whether
    it is a standby) and ``parse`` (the part, from one list of rows per query, in the
    same order). ``collect`` runs them one at a time: the path for a collector that
    cannot join the batch this poll, and for callers that poll one collector alone.
    """

    def queries(self, version: int, standby: bool) -> Sequence[str]:
        raise NotImplementedError

    def parse(self, results: Sequence[Rows], version: int, standby: bool) -> Any:
        raise NotImplementedError

    async def collect(self, conn: AsyncConnection[Any], version: int) -> Any:
        standby = await in_recovery(conn)
        results = [await rows(conn, sql) for sql in self.queries(version, standby)]
        return self.parse(results, version, standby)


@dataclass(slots=True)
class BatchOutcome:
    """What one pipelined batch returned, by collector name."""

    # Every query of these collectors has its rows, in query order.
    done: dict[str, list[Rows]]
    # The collector whose query failed first, and the error; None when none failed.
    failed: str | None = None
    error: BaseException | None = None


async def run_batch(
    conn: AsyncConnection[Any],
    plans: Sequence[tuple[str, Sequence[str]]],
    binary: Collection[str] = (),
) -> BatchOutcome:
    """Run every collector's queries in one pipeline, in order (those in ``binary``
    with binary results: cheaper to read for thousands of rows of numbers).

    Collectors missing from both ``done`` and ``failed`` had a query aborted (or never
    sent) behind the failure: the caller runs them again on their own. An error that
    leaves the connection unusable is left for the caller to judge (``conn.broken``).
    """
    owners: list[str] = []
    cursors: list[psycopg.AsyncCursor[Any]] = []
    error: BaseException | None = None
    results: dict[str, list[Rows]] = {name: [] for name, sqls in plans if not sqls}
    try:
        async with conn.pipeline():
            try:
                for name, sqls in plans:
                    for sql in sqls:
                        cur = conn.cursor(binary=sql in binary)
                        owners.append(name)
                        cursors.append(cur)
                        await cur.execute(sql.encode())
            except psycopg.Error as exc:
                # Raised while sending, by an earlier query's result: stop sending.
                # Caught here so leaving the pipeline is not an error path (psycopg
                # would log its own warning, naming the server's address).
                error = exc
    except psycopg.Error as exc:  # raised by the final sync
        error = error or exc
    failed: str | None = None
    for name, cur in zip(owners, cursors, strict=True):
        if cur.pgresult is None or cur.pgresult.status != psycopg.pq.ExecStatus.TUPLES_OK:
            # Results are read in order: the first query without one is the failure.
            failed = name if error is not None else None
            break
        results.setdefault(name, []).append(await cur.fetchall())  # tuples already
    counts = Counter(owners)
    done = {n: r for n, r in results.items() if len(r) == counts.get(n, 0) and n != failed}
    if failed is None and error is not None:
        # An error no query owns (the sync itself): nothing can be trusted to be done
        # beyond what has its rows; report it on the first collector left over.
        failed = next((n for n in counts if n not in done), None)
    return BatchOutcome(done, failed, error if failed is not None else None)
