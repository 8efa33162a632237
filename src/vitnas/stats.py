"""The statistics every table reports: rank correlations with bootstrap intervals, means with
t-intervals over replicates, and the verdict of a claim from its interval. scipy underneath.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def _quietly(fn, *args, **kwargs):
    """scipy warns on constant input (the statistic is NaN there, which is what the tables show)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (stats.ConstantInputWarning, stats.DegenerateDataWarning,
                                         RuntimeWarning))
        return fn(*args, **kwargs)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties counted as neither concordant nor discordant); NaN if a side is constant."""
    return float(_quietly(stats.kendalltau, np.asarray(x, float), np.asarray(y, float)).statistic)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks; NaN if a side is constant."""
    return float(_quietly(stats.spearmanr, np.asarray(x, float), np.asarray(y, float)).statistic)


def rank_correlations(x, y) -> dict:
    """Kendall tau (tau-b) and Spearman rho between two equally long sequences."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"rank correlation needs two sequences of equal length >= 2 (got {len(x)}, {len(y)})")
    return {"kendall_tau": kendall_tau(x, y), "spearman_rho": spearman_rho(x, y)}


def bootstrap_ci(stat: Callable[[np.ndarray], float], n: int, resamples: int, seed: int,
                 confidence: float = CONFIDENCE) -> list[float]:
    """Percentile bootstrap interval of `stat(indices)` over `resamples` draws of `n` indices with
    replacement (`scipy.stats.bootstrap` draws them; linear interpolation between order statistics).
    Resamples where the statistic is undefined (NaN: all one value) are dropped before the
    percentiles, which scipy alone would turn into a NaN interval; [NaN, NaN] if none is left."""
    draws = _quietly(stats.bootstrap, (np.arange(n),), lambda i: stat(i), n_resamples=resamples,
                     vectorized=False, method="percentile", rng=np.random.default_rng(seed))
    values = np.asarray(draws.bootstrap_distribution, float)
    values = values[np.isfinite(values)]
    if not len(values):
        return [float("nan"), float("nan")]
    alpha = (1 - confidence) / 2
    return [float(np.percentile(values, 100 * alpha)), float(np.percentile(values, 100 * (1 - alpha)))]


def rank_correlations_ci(x, y, resamples: int = 2000, seed: int = 0) -> dict:
    """`rank_correlations` with 95 % bootstrap intervals, resampling the (x, y) pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = rank_correlations(x, y)
    out["kendall_tau_ci"] = bootstrap_ci(lambda i: kendall_tau(x[i], y[i]), len(x), resamples, seed)
    out["spearman_rho_ci"] = bootstrap_ci(lambda i: spearman_rho(x[i], y[i]), len(x), resamples, seed)
    return out


def paired_tau_difference(a, b, truth, resamples: int = 2000, seed: int = 0) -> dict:
    """tau(a, truth) - tau(b, truth) on the same architectures, with a paired bootstrap interval:
    does predictor `a` rank better than `b`?"""
    a, b, truth = (np.asarray(v, float) for v in (a, b, truth))
    diff = lambda i: kendall_tau(a[i], truth[i]) - kendall_tau(b[i], truth[i])
    return {"difference": diff(np.arange(len(a))), "ci": bootstrap_ci(diff, len(a), resamples, seed)}


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided quantile of Student's t with `df` degrees of freedom (4.303 for df = 2)."""
    return float(stats.t.ppf(1 - (1 - confidence) / 2, df))


def mean_interval(values: Sequence[float]) -> dict:
    """Mean, sample SD and the 95 % t-interval of the mean; with one value the SD and the interval
    are NaN (one replicate says nothing about seed-to-seed spread)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    n = len(v)
    if n == 0:
        return {"n": 0, "mean": float("nan"), "sd": float("nan"), "ci": [float("nan"), float("nan")]}
    mean = float(v.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "sd": float("nan"), "ci": [float("nan"), float("nan")]}
    sd = float(v.std(ddof=1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci": [mean - half, mean + half]}


def verdict(ci: Sequence[float]) -> str:
    """A claim 'difference > 0' from the 95 % interval of the difference: reproduced if the whole
    interval is above 0, not reproduced if it is wholly below, inconclusive otherwise (or unknown)."""
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if lo > 0:
        return "reproduced"
    if hi < 0:
        return "not reproduced"
    return "inconclusive"
