"""steady.py (issue 21): the warm-up rule (MSER-5) and the percentile interval (sectioning) that
every fleet simulation is read with, checked against distributions whose answers are known."""

import math

import numpy as np
import pytest

from tokenmath.steady import SECTIONS, T_QUANTILE, mser5, percentile_interval


def test_t_quantile_is_students():
    """The interval's multiplier is Student's t at 0.975 with SECTIONS − 1 = 19 degrees of freedom:
    2.093 in the tables (e.g. NIST/SEMATECH e-Handbook of Statistical Methods, table 1.3.6.7.2:
    2.093); scipy's t.ppf gives the same to 4 digits where scipy is installed."""
    assert SECTIONS == 20 and T_QUANTILE == 2.093
    stats = pytest.importorskip("scipy.stats")
    assert stats.t.ppf(0.975, SECTIONS - 1) == pytest.approx(T_QUANTILE, abs=5e-4)


def test_mser5_cuts_a_known_initial_transient():
    """A series that starts 5 standard deviations low and relaxes linearly to its steady mean over its
    first 2,000 observations (then stays): the bias ends at 2,000, and MSER-5 (White 1997) should cut
    about there — within the transient's last 20 % (where the bias is under 1 σ) or a little after."""
    rng = np.random.default_rng(1)
    n, ramp = 20_000, 2_000
    bias = np.where(np.arange(n) < ramp, -5.0 * (1 - np.arange(n) / ramp), 0.0)
    w = mser5(bias + rng.normal(size=n))
    assert w.settled
    assert 0.8 * ramp <= w.discard <= 1.5 * ramp


def test_mser5_keeps_a_stationary_series_and_flags_a_trend():
    """Stationary noise needs (almost) no cut; a series that grows without end (an overloaded queue)
    puts the MSER minimum on the edge of the first half: not settled."""
    rng = np.random.default_rng(2)
    w = mser5(rng.exponential(size=10_000))
    assert w.settled and w.discard <= 1_000
    trend = np.arange(10_000, dtype=float) + rng.exponential(size=10_000)
    w = mser5(trend)
    assert not w.settled and w.discard >= 4_900


def test_invariant_mser5_of_a_constant_series_cuts_nothing():
    """Invariant: a series that never varies has nothing to discard."""
    assert mser5(np.full(1000, 0.25)).discard == 0 and mser5(np.full(1000, 0.25)).settled


def test_p99_interval_covers_the_exponential_quantile_at_its_stated_rate():
    """i.i.d. exponential samples of mean 1 have a p99 of ln 100 = 4.605 (closed form). Over 400
    independent runs of 8,000 samples, the 95 % sectioning interval should cover it in 95 % of runs:
    the binomial 99.9 % range for 400 runs at 0.95 is 0.925–0.975, widened to 0.90–0.985 for the
    interval's own approximations (20 sections, interpolated percentiles)."""
    rng = np.random.default_rng(3)
    truth = math.log(100)
    hits, widths = 0, []
    for _ in range(400):
        iv = percentile_interval(rng.exponential(size=8_000), 99)
        hits += iv.low <= truth <= iv.high
        widths.append(iv.relative_half_width)
    assert 0.90 <= hits / 400 <= 0.985
    # the i.i.d. standard error of a p99 is sqrt(p(1 − p)/n) / f(q), f(q) = e^(−q) = 0.01 the density
    # there: sqrt(0.0099 / 8000) / 0.01 = 0.1112, so the half-width is about t(19) × 0.1112 / 4.605 = 5.1 %
    # of the estimate (asymptotic normality of sample quantiles; the 15 % allows for 20 sections' noise)
    assert np.median(widths) == pytest.approx(T_QUANTILE * 0.1112 / truth, rel=0.15)


def test_p99_interval_widens_for_a_correlated_series():
    """A correlated series (AR(1), φ = 0.95: each value remembers the last, as waiting times in a
    queue do) has far fewer independent values than observations: its interval must be wider than
    that of i.i.d. values with the same marginal distribution, and still cover the known p99 of the
    stationary normal, 2.326·σ/√(1−φ²), in most runs (at least 17 of 20 at a nominal 95 %)."""
    rng = np.random.default_rng(4)
    phi, n = 0.95, 40_000
    truth = 2.3263 / math.sqrt(1 - phi * phi)
    cover, ratios = 0, []
    for _ in range(20):
        e = rng.normal(size=n)
        x = np.empty(n)
        x[0] = e[0] / math.sqrt(1 - phi * phi)
        for i in range(1, n):
            x[i] = phi * x[i - 1] + e[i]
        iv = percentile_interval(x, 99)
        cover += iv.low <= truth <= iv.high
        ratios.append(iv.half_width / percentile_interval(rng.permutation(x), 99).half_width)
    assert cover >= 17
    assert np.median(ratios) > 2.0


def test_interval_of_too_few_values_is_unknown():
    """Fewer values than sections: no interval (0 to inf), never a false precision."""
    iv = percentile_interval(np.arange(10.0), 99)
    assert iv.half_width == math.inf and iv.relative_half_width == math.inf
