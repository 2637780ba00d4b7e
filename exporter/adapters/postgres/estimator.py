"""Spread one interval of a pg_stat_statements entry over histogram buckets.

pg_stat_statements keeps, per statement, cumulative ``calls``, total time, the
population standard deviation (Welford's running variance) and ``min``/``max`` since
the entry was created. Between two polls that gives, exactly, the number of calls n,
their sum S and their sum of squares Q, so the interval's mean m = S/n and variance
v = Q/n - m². The individual durations are gone; placing all n calls at m (what the
exporter did before) erases every tail, and the tail is what the p95 alerts are for.

The estimator matches a Beta distribution on [min, max] to (m, v):

* with r = v / ((m - min)(max - m)) — the variance as a share of the largest variance
  any distribution on [min, max] with mean m can have — a Beta(a, b) scaled to
  [min, max] has a + b = 1/r - 1. When r is small (a smooth, unimodal statement) that
  is a concentrated bell around m; as r approaches 1 it becomes the two-point
  distribution at min and max, which is exactly what a bimodal statement (fast calls
  and lock waits, cache hits and misses) is. One family covers both, with no switch.
* min/max are support bounds, not data: no observation is ever placed outside them.
* the expected count per bucket is rounded on the cumulative (n·F(bound)) so the
  counts are non-negative integers summing to n exactly: ``_count`` and ``_sum`` stay
  exact and every bucket counter stays monotonic.

Where it is wrong (see docs/postgres.md): min/max are cumulative since the entry's
creation, so an old outlier widens the support for good and thins the estimate's
upper tail; a distribution with more than two modes is drawn as one or two; and with
few calls per interval the shape is a guess (n = 1 is exact: the one value is S).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Below this share of the maximal variance the spread is treated as none at all: the
# statement is uniform within measurement noise and every call goes at the mean.
_FLAT = 1e-6
# Above this share the distribution is the two-point one at min and max.
_TWO_POINT = 0.999


def sum_of_squares(calls: int, total: float, stddev: float) -> float:
    """Σx² of an entry from its calls, total and population standard deviation.

    Σx² = calls·(stddev² + mean²) with the population stddev pg_stat_statements
    reports; the difference of two such sums is an interval's sum of squares.
    """
    if calls <= 0:
        return 0.0
    mean = total / calls
    return calls * (stddev * stddev + mean * mean)


def spread(
    n: int,
    total: float,
    squares: float,
    low: float,
    high: float,
    bounds: Sequence[float],
) -> list[int]:
    """Counts per bucket (one per bound, then +Inf) for n calls summing to ``total``.

    ``squares`` is their sum of squares; ``low``/``high`` bound every call. All values
    in one unit (the caller's: seconds for the exporter). The result sums to n.
    """
    counts = [0] * (len(bounds) + 1)
    if n <= 0:
        return counts
    mean = total / n
    variance = squares / n - mean * mean
    # Bounds that contradict the mean (a reset between reads, rounding) carry nothing.
    if not (math.isfinite(low) and math.isfinite(high)) or not low <= mean <= high:
        low, high = mean, mean
    room = (mean - low) * (high - mean)  # the largest variance [low, high] allows
    if n == 1 or room <= 0 or not math.isfinite(variance) or variance <= _FLAT * room:
        counts[_index(bounds, mean)] = n
        return counts
    share = min(variance / room, 1.0)
    if share >= _TWO_POINT:

        def cdf(x: float) -> float:
            p_high = (mean - low) / (high - low)
            return 0.0 if x < low else (1.0 - p_high if x < high else 1.0)

    else:
        mu = (mean - low) / (high - low)
        nu = 1.0 / share - 1.0
        a, b = mu * nu, (1.0 - mu) * nu

        def cdf(x: float) -> float:
            if x <= low:
                return 0.0
            if x >= high:
                return 1.0
            return regularized_beta((x - low) / (high - low), a, b)

    placed = 0
    for i, bound in enumerate(bounds):
        cumulative = min(n, max(placed, round(n * cdf(bound))))
        counts[i] = cumulative - placed
        placed = cumulative
    counts[-1] = n - placed
    return counts


def _index(bounds: Sequence[float], value: float) -> int:
    """The bucket a value falls in (``le`` semantics: a value equal to a bound is in it)."""
    for i, bound in enumerate(bounds):
        if value <= bound:
            return i
    return len(bounds)


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the Beta(a, b) CDF at x, by Lentz's continued fraction.

    Written out (about 30 lines) rather than pulling scipy into the exporter; checked
    against scipy.special.betainc in the tests.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        m2 = 2 * m
        # even step
        num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        # odd step
        num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        result *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return result
