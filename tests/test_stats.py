"""Rank correlations, the bootstrap interval, t-intervals over replicates and verdicts, on inputs
whose answers are worked out by hand."""
import itertools
import math

import numpy as np
import pytest

from vitnas.stats import (bootstrap_ci, kendall_tau, mean_interval, paired_tau_difference,
                          rank_correlations, rank_correlations_ci, verdict)


@pytest.mark.parametrize("y, tau, rho", [
    ([10, 20, 30, 40, 50], 1.0, 1.0),      # perfectly concordant
    ([50, 40, 30, 20, 10], -1.0, -1.0),    # reversed
    ([20, 10, 30, 40, 50], 0.8, 0.9),      # one swapped pair: (10 - 2 x 1) / 10; 1 - 6 x 2 / 120
])
def test_rank_correlations(y, tau, rho):
    r = rank_correlations([1, 2, 3, 4, 5], y)
    assert r["kendall_tau"] == pytest.approx(tau)
    assert r["spearman_rho"] == pytest.approx(rho)


def test_rank_correlations_with_ties_and_constants():
    r = rank_correlations([1, 2, 3, 4], [1, 1, 2, 2])  # tau-b: 4 concordant / sqrt(6 x 4)
    assert r["kendall_tau"] == pytest.approx(4 / math.sqrt(24))
    assert math.isnan(rank_correlations([1, 2, 3], [5, 5, 5])["kendall_tau"])
    with pytest.raises(ValueError):
        rank_correlations([1], [1])


def test_bootstrap_interval_of_a_mean_by_hand():
    # Two values 0 and 1, resampled in pairs: the mean is 0 (1/4), 0.5 (1/2) or 1 (1/4), so the
    # 2.5th and 97.5th percentiles are 0 and 1.
    x = np.array([0.0, 1.0])
    assert bootstrap_ci(lambda i: x[i].mean(), 2, 4000, seed=0) == [0.0, 1.0]
    # [0, 0, 1] resampled in threes: mean 0, 1/3, 2/3 or 1 with probabilities 8/27, 12/27, 6/27
    # and 1/27; the mass up to 2/3 is 26/27 = 96.3 % < 97.5 %, so the interval is [0, 1].
    y = np.array([0.0, 0.0, 1.0])
    lo, hi = bootstrap_ci(lambda i: y[i].mean(), 3, 20000, seed=1)
    assert lo == 0.0 and hi == 1.0


def test_bootstrap_interval_of_kendall_tau_by_enumeration():
    """The percentile interval converges to the exact one: every one of the 3^3 resamples of
    three (x, y) pairs enumerated, degenerate ones (tau undefined) dropped."""
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])
    exact = [kendall_tau(x[list(i)], y[list(i)]) for i in itertools.product(range(3), repeat=3)]
    exact = np.array([t for t in exact if math.isfinite(t)])
    # By hand: the 6 resamples with all three points give tau 1/3 (pairs 0-1 and 0-2 concordant,
    # 1-2 discordant); the 18 with two distinct points give +1 (pairs 0-1, 0-2: 12) or -1 (pair
    # 1-2: 6); the 3 with one point are undefined. So -1 has 25 % of the mass and +1 50 %.
    assert sorted(set(np.round(exact, 6))) == [-1.0, round(1 / 3, 6), 1.0]
    # (scipy's tau-b divides by a square root: +-1 come out within a few ulps, not exactly)
    assert np.sum(np.isclose(exact, -1, rtol=0, atol=1e-12)) == 6
    assert np.sum(np.isclose(exact, 1, rtol=0, atol=1e-12)) == 12
    r = rank_correlations_ci(x, y, resamples=2000, seed=0)  # -1 holds 25 % of the mass, +1 50 %
    assert r["kendall_tau"] == pytest.approx(1 / 3)
    assert r["kendall_tau_ci"] == pytest.approx([-1.0, 1.0], rel=0, abs=1e-12)


def test_paired_tau_difference():
    truth = np.arange(8.0)
    good, bad = truth + 0.1, truth[::-1].copy()
    d = paired_tau_difference(good, bad, truth, resamples=500, seed=0)
    assert d["difference"] == pytest.approx(2.0)  # tau 1 - tau -1
    assert d["ci"] == pytest.approx([2.0, 2.0], rel=0, abs=1e-12)  # every resample with two distinct points keeps both orders


def test_mean_interval_and_verdict():
    m = mean_interval([2.0, 3.0, 4.0])  # mean 3, SD 1, t(2) = 4.303: 3 -/+ 4.303 / sqrt(3)
    assert m["mean"] == 3.0 and m["sd"] == 1.0 and m["n"] == 3
    # 4.303 is t(2)'s 97.5 % quantile rounded to three decimals: equal within that rounding.
    assert m["ci"] == pytest.approx([3 - 4.303 / math.sqrt(3), 3 + 4.303 / math.sqrt(3)], abs=0.0005 / math.sqrt(3))
    assert verdict(m["ci"]) == "reproduced"
    assert verdict(mean_interval([-2.0, -3.0, -4.0])["ci"]) == "not reproduced"
    assert verdict(mean_interval([-1.0, 2.0, 0.5])["ci"]) == "inconclusive"
    one = mean_interval([5.0])  # one replicate: no spread, no interval, no verdict
    assert one["mean"] == 5.0 and math.isnan(one["sd"]) and verdict(one["ci"]) == "inconclusive"


@pytest.mark.parametrize("df, quantile", [(1, 12.706), (4, 2.776), (9, 2.262), (30, 2.042), (60, 2.000), (120, 1.980)])
def test_t_quantile_matches_the_printed_table(df, quantile):
    """Student's t 97.5 % quantiles as printed in statistics tables (three decimals)."""
    from vitnas.stats import t_quantile
    assert t_quantile(df) == pytest.approx(quantile, abs=0.0005)
