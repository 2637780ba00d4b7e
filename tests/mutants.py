"""Mutation check: does the suite notice when the delta and validation logic breaks?

Run it from the repository root (it takes a few minutes; the servers are real)::

    python tests/mutants.py            # every mutant
    python tests/mutants.py redis-     # only mutants whose name starts with "redis-"
    python tests/mutants.py --list     # names, files and the tests each one runs
    python tests/mutants.py --show web-  # also print the failure that killed each one

Each mutant is a small deliberate bug written by hand: one snippet of one file replaced
by a wrong one, plus the tests that must catch it. Hand-written rather than generated
(mutmut, cosmic-ray) because the interesting bugs here are semantic (a reset signal
dropped, a boundary moved by one) and the tests that catch them start real servers:
a tool that generates hundreds of operator swaps and runs the whole suite for each
would take hours on this suite, and most of its mutants would be noise.

The tree is copied once to a temporary directory; each mutant is applied there, its
tests run with that copy first on ``PYTHONPATH``, and the file is restored. The
working tree is never touched. Before any mutant, the named tests must pass on the
unmodified copy, or a "killed" would mean nothing.

A mutant whose original snippet is not found (or is found more than once) is an
error, not a pass: the code moved and the mutant must be re-pointed. Exit status: 0
when every mutant is killed, 1 when any survived or errored.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 900  # seconds per pytest run; a hang counts as killed (and is reported)


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    why: str


R = "exporter/adapters/redis/latency.py"
PG = "exporter/adapters/postgres/statements.py"
S3 = "exporter/adapters/s3/cloudwatch.py"
MINIO = "exporter/adapters/s3/minio_format.py"
CONFIG = "exporter/config.py"
SERVICE = "exporter/service.py"
WEB = "exporter/webconfig.py"

TR = "tests/test_redis.py::"
TP = "tests/test_postgres.py::"
PL = "tests/test_pg_latency.py::"
TS = "tests/test_s3.py::"
REDIS_MODEL = TR + "test_exported_histograms_match_a_reference_model_whatever_redis_reports"
REDIS_RESETSTAT = TR + "test_resetstat_followed_by_more_calls_than_before_counts_from_the_reset"
PG_RESET = TP + "test_reset_and_per_entry_reset_never_yield_bogus_observations"
PG_HIST = TP + "test_histogram_places_60ms_statements_in_the_50_to_100ms_bucket"
MINIO_COUNTERS = TS + "test_minio_counters_survive_node_restarts_and_node_switches"
CW = TS + "test_cloudwatch_datapoints_become_exact_counters"
CW_WINDOWS = TS + "test_windows_align_to_the_period_and_never_overlap"
WEB_CACHE = "tests/test_webconfig.py::test_successful_checks_are_cached_and_failures_are_not"
WEB_TIMING = "tests/test_webconfig.py::test_unknown_users_take_the_same_bcrypt_path_as_known_ones"
CONFIG_MISTAKES = "tests/test_config.py::test_each_mistake_names_its_path_and_exits_2"

MUTANTS: tuple[Mutant, ...] = (
    # --- Redis: LATENCY HISTOGRAM deltas ---------------------------------------------------
    Mutant(
        "redis-no-restart-detection",
        R,
        "(self.run_id is not None and run_id != self.run_id)",
        "False",
        (TR + "test_restart_followed_by_more_calls_is_seen_by_run_id_alone",),
        "issue 17 #4: a restart followed by more traffic counted short",
    ),
    Mutant(
        "redis-no-total-check",
        R,
        "or (self.total_commands is not None and total < self.total_commands)",
        "",
        (TR + "test_resetstat_after_heavy_traffic_is_seen_by_the_total_alone",),
        "issue 17 #3: RESETSTAT seen by total_commands_processed going backwards",
    ),
    Mutant(
        "redis-no-own-call-check",
        R,
        "or (own_counted and _own_call_missing(self.commands.previous, histogram))",
        "",
        (REDIS_RESETSTAT,),
        "issue 17 #3: RESETSTAT then more calls on a young server (30 counted, not 40)",
    ),
    Mutant(
        "redis-own-call-off-by-one",
        R,
        "if now > before:",
        "if now >= before:",
        (REDIS_RESETSTAT,),
        "the previous LATENCY call must add one",
    ),
    Mutant(
        "redis-tracking-off-is-a-reset",
        R,
        "return histogram.keys() != previous.keys() or any(",
        "return True or any(",
        (TR + "test_latency_tracking_off_is_not_mistaken_for_a_reset",),
        "frozen counts re-added at every poll",
    ),
    Mutant(
        "redis-tracking-back-on-is-a-reset",
        R,
        "own_counted = not (disabled or self.tracking_off)",
        "own_counted = True",
        (TR + "test_latency_tracking_off_is_not_mistaken_for_a_reset",),
        "everything counted again when latency-tracking is switched back on",
    ),
    Mutant(
        "redis-first-reply-counted",
        R,
        "if self.previous is not None:  # the very first reply is only a baseline",
        "if True:",
        (REDIS_MODEL, TR + "test_command_histogram_against_a_known_workload"),
        "history before the exporter started counted as new",
    ),
    Mutant(
        "redis-reset-flag-ignored",
        R,
        "delta = self._delta(raw, None if reset else self.previous.get(cmd))",
        "delta = self._delta(raw, self.previous.get(cmd))",
        (REDIS_MODEL,),
        "a detected reset still diffed against the old counts",
    ),
    Mutant(
        "redis-unchanged-command-recounted",
        R,
        "if raw.calls >= prev.calls and usec >= 0 and min(per_bucket) >= 0:",
        "if raw.calls > prev.calls and usec >= 0 and min(per_bucket) >= 0:",
        (REDIS_MODEL,),
        "a command with no new calls counted again from zero",
    ),
    Mutant(
        "redis-negative-bucket-delta",
        R,
        "if raw.calls >= prev.calls and usec >= 0 and min(per_bucket) >= 0:",
        "if raw.calls >= prev.calls and usec >= 0:",
        (REDIS_MODEL,),
        "a bucket going backwards exported as a negative observation",
    ),
    Mutant(
        "redis-top-n-off-by-one",
        R,
        "top = set(ranked[: self.top_n])",
        "top = set(ranked[: self.top_n + 1])",
        (REDIS_MODEL, TR + "test_commands_beyond_the_cap_go_to_other_and_never_decrease"),
        "one command too many gets its own series",
    ),
    # --- PostgreSQL: pg_stat_statements deltas ---------------------------------------------
    Mutant(
        "postgres-no-stats-reset-check",
        PG,
        "and stats_reset != self.previous_reset",
        "and False",
        (PG_RESET, PL + "test_calls_after_a_reset_are_all_counted_even_more_than_before"),
        "issue 17 #1: a reset then more calls than before makes up an observation",
    ),
    Mutant(
        "postgres-single-call-dropped",
        PG,
        "if d_calls <= 0 or d_ms < 0:",
        "if d_calls <= 1 or d_ms < 0:",
        (PG_RESET, PL + "test_new_statement_and_a_single_call_per_interval_are_counted"),
        "issue 17 #2: a statement called once between polls never counted",
    ),
    Mutant(
        "postgres-first-sight-baseline",
        PG,
        "if not new_counts and not full_reset:",
        "if True:",
        (PL + "test_new_statement_and_a_single_call_per_interval_are_counted",),
        "issue 10 #4: a statement first seen between two polls loses its first interval",
    ),
    Mutant(
        "postgres-mean-only",
        PG,
        "                    max(d_squares, 0.0) / 1e6,",
        "                    (seconds * seconds / d_calls),",
        (PL + "test_bimodal_statement_whose_mean_is_under_50ms_reads_critical",),
        "issue 10 #1: every call of an interval placed at its mean flattens the tail",
    ),
    Mutant(
        "postgres-total-not-mean",
        PG,
        "                    d_calls,\n                    seconds,\n",
        "                    d_calls,\n                    seconds * d_calls,\n",
        (PG_HIST,),
        "each call observed at the whole interval's time",
    ),
    Mutant(
        "postgres-calls-counted-once",
        PG,
        "bucket[0] += d_calls",
        "bucket[0] += 1",
        (PG_HIST,),
        "per-statement calls disagree with the histogram count",
    ),
    # --- S3: MinIO counters and CloudWatch windows -----------------------------------------
    Mutant(
        "minio-equal-value-recounted",
        MINIO,
        "increase = r.value if before is None or r.value < before else r.value - before",
        "increase = r.value if before is None or r.value <= before else r.value - before",
        (MINIO_COUNTERS,),
        "an unchanged node counter added again at every scrape",
    ),
    Mutant(
        "minio-restart-negative",
        MINIO,
        "increase = r.value if before is None or r.value < before else r.value - before",
        "increase = r.value if before is None else r.value - before",
        (MINIO_COUNTERS,),
        "a node restart makes the total go down",
    ),
    Mutant(
        "cloudwatch-window-applied-twice",
        S3,
        "        self._apply_requests(data, meaning)\n        self.cw_end = end\n",
        "        self._apply_requests(data, meaning)\n",
        (CW, CW_WINDOWS),
        "the same datapoints added at every poll",
    ),
    Mutant(
        "cloudwatch-other-double-counted",
        S3,
        "other = max(0.0, sums.get((name, CW_ALL_REQUESTS), 0.0) - known)",
        "other = sums.get((name, CW_ALL_REQUESTS), 0.0)",
        (CW,),
        "requests of known operations counted again under other",
    ),
    Mutant(
        "cloudwatch-window-every-period",
        S3,
        "if end - start < max(cw.interval, period):",
        "if end - start < period:",
        (CW, CW_WINDOWS),
        "a query per period whatever the configured interval (the bill)",
    ),
    # --- configuration and reload ------------------------------------------------------------
    Mutant(
        "config-timeout-equal-to-interval",
        CONFIG,
        "if timeout >= interval:",
        "if timeout > interval:",
        ("tests/test_config.py::test_poll_timeout_equal_to_the_interval_is_refused",),
        "issue 17 #5: poll_timeout == poll_interval accepted",
    ),
    Mutant(
        "config-duplicate-names",
        CONFIG,
        "if (section, target.name) in seen:",
        "if False:",
        (CONFIG_MISTAKES,),
        "two targets with one name (one series for both)",
    ),
    Mutant(
        "config-no-targets",
        CONFIG,
        "if total == 0:",
        "if total < 0:",
        (CONFIG_MISTAKES,),
        "a config with no target starts an exporter that exports nothing",
    ),
    Mutant(
        "reload-schedule-ignored",
        SERVICE,
        "        target,\n        interval,\n        config.timeout_for(target),\n"
        "        interval * config.stale_after_intervals,\n",
        "        target,\n",
        ("tests/test_reload.py::test_sighup_that_changes_only_the_global_schedule_is_applied",),
        "issue 17 #7: a SIGHUP changing only the global schedule ignored",
    ),
    # --- web config: basic auth ----------------------------------------------------------------
    Mutant(
        "web-unknown-user-answered-early",
        WEB,
        "        hashed = self.users.get(user)\n",
        "        hashed = self.users.get(user)\n"
        "        if hashed is None:\n"
        "            return False\n",
        (WEB_TIMING,),
        "issue 17 #6: user enumeration by timing",
    ),
    Mutant(
        "web-dummy-hash-cheap",
        WEB,
        "cost = int(match.group(1))",
        "cost = 4",
        (WEB_TIMING,),
        "unknown users checked at a lower cost than real ones (timing again)",
    ),
    Mutant(
        "web-failures-cached",
        WEB,
        "if ok and hashed is not None:\n            self._ok[",
        "if hashed is not None:\n            self._ok[",
        (WEB_CACHE,),
        "a wrong password, once tried, accepted from the cache",
    ),
    Mutant(
        "web-long-password-accepted",
        WEB,
        "except ValueError:  # over 72 bytes, or a hash bcrypt refuses\n            ok = False",
        "except ValueError:  # over 72 bytes, or a hash bcrypt refuses\n            ok = True",
        (WEB_CACHE,),
        "a password bcrypt refuses (over 72 bytes) let in",
    ),
)


def copy_tree(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(
        ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "*.egg-info"
    )
    shutil.copytree(ROOT, dest / "tree", ignore=ignore)
    return dest / "tree"


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[int | None, str]:
    """pytest's exit code (None on timeout) and the tail of its output."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    cmd += ["-p", "no:xdist"] if _has_xdist() else []
    cmd += ["--hypothesis-seed=0"]
    try:
        done = subprocess.run(
            cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {TIMEOUT}s"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, "\n".join(lines[-15:])


def _has_xdist() -> bool:
    try:
        import xdist  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", nargs="*", help="run only mutants whose name starts so")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--show", action="store_true", help="print how each mutant was killed")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.prefix or m.name.startswith(tuple(args.prefix))]
    if args.list:
        for m in chosen:
            print(f"{m.name}  ({m.file}): {m.why}\n    " + "\n    ".join(m.tests))
        return 0
    if not chosen:
        print("no mutant matches", file=sys.stderr)
        return 1

    results: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="sparki-mutants-") as tmp:
        tree = copy_tree(Path(tmp))
        runnable = []
        for m in chosen:
            found = (tree / m.file).read_text().count(m.original)
            if found != 1:
                where = "not found" if found == 0 else f"found {found} times"
                results.append((m.name, "ERROR", f"original snippet {where} in {m.file}"))
            else:
                runnable.append(m)
        tests = tuple(dict.fromkeys(t for m in runnable for t in m.tests))
        if tests:
            print(f"baseline: {len(tests)} tests on the unmodified copy ...", flush=True)
            code, tail = run_tests(tree, tests)
            if code != 0:
                print(f"the named tests fail without any mutant:\n{tail}", file=sys.stderr)
                return 1
        for m in runnable:
            path = tree / m.file
            source = path.read_text()
            path.write_text(source.replace(m.original, m.mutated))
            start = time.monotonic()
            try:
                code, tail = run_tests(tree, m.tests)
            finally:
                path.write_text(source)
            took = f"{time.monotonic() - start:.0f}s"
            if code == 0:
                status, detail = "SURVIVED", f"{took}; {m.why}"
            elif code in (1, None):
                status, detail = "killed", took + ("" if code == 1 else " (tests hung)")
            else:  # 2-5: interrupted, internal error, usage error, nothing collected
                status, detail = "ERROR", f"pytest exit {code}:\n{tail}"
            results.append((m.name, status, detail))
            print(f"{status:8} {m.name}: {detail}", flush=True)
            if args.show and status == "killed":
                print("    " + tail.replace("\n", "\n    "), flush=True)

    survived = [r for r in results if r[1] != "killed"]
    print(f"\n{len(results) - len(survived)}/{len(results)} killed")
    for name, status, detail in survived:
        print(f"{status:8} {name}: {detail}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
