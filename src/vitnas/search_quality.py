"""How good a search strategy is, where the answer is known: runs `evolve`, `random_search` and
`pareto_search` on NAS-Bench-Macro (`vitnas.tabular`) and scores what they return by regret.

A run sees noisy scores (one of three trainings per network, seeded by the run) and returns its
best-scoring in-window network; it is judged on the mean accuracy: regret against the window's best
and percentile within the window. Strategies compare at equal distinct evaluations and the same
seeds (the same noise draw), so differences are paired.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .pareto import pareto_search
from .search import ScoreCache, evolve, n_evaluations, random_search
from .tabular import MacroTable, TabularGenome, judge, noisy_score

STRATEGIES = {"evolution": evolve, "random": random_search}
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Window:
    """A budget window [lo, hi] (hi = the budget: the `percentile` of the table's FLOPs)."""

    name: str
    percentile: float
    fraction: float
    lo: float
    hi: float
    size: int  # networks inside


def windows(table: MacroTable, percentiles, fraction: float) -> list[Window]:
    """[fraction x C, C] for C at each FLOPs percentile of the table."""
    out = []
    for q in percentiles:
        c = float(np.percentile(table.flops, q))
        out.append(Window(f"p{q:g}", q, fraction, fraction * c, c, len(table.window(fraction * c, c))))
    return out


def budget_windows(table: MacroTable, budgets, fraction: float) -> list[Window]:
    """[fraction x C, C] for each budget C (MACs strings such as "55.4M", the pipeline's budgets)."""
    from .spaces import parse_macs

    out = []
    for name in budgets:
        c = parse_macs(name)
        out.append(Window(name, float(100 * np.mean(table.flops <= c)), fraction, fraction * c, c,
                          len(table.window(fraction * c, c))))
    return out


def incumbent_regret(table: MacroTable, rows: list[dict], lo: float, hi: float) -> np.ndarray:
    """After each evaluation, the regret of what the search would return for [lo, hi] then: its
    best-scoring in-window network so far (fewer MACs breaks ties, as `search.best_of`); NaN until
    one lies in the window."""
    best = table.mean_acc[table.window(lo, hi)].max()
    out, top, regret = np.full(len(rows), np.nan), None, np.nan
    for i, r in enumerate(rows):
        if lo <= r["macs"] <= hi and (top is None or (r["accuracy"], -r["macs"]) > top):
            top = (r["accuracy"], -r["macs"])
            regret = best - table.mean_acc[table.index[json.loads(r["arch"])]]
        out[i] = regret
    return out


def found(table: MacroTable, rows: list[dict], window: Window) -> dict:
    """Regret, percentile and the regret curve of the network `rows` return for `window`."""
    curve = incumbent_regret(table, rows, window.lo, window.hi)
    inside = [r for r in rows if window.lo <= r["macs"] <= window.hi]
    if not inside:
        return {"regret": np.nan, "percentile": np.nan, "curve": curve}
    top = max(inside, key=lambda r: (r["accuracy"], -r["macs"]))
    judged = judge(table, json.loads(top["arch"]), window.lo, window.hi)
    return {"regret": judged.regret, "percentile": judged.percentile, "curve": curve}


def run_strategy(name: str, table: MacroTable, window: Window, cfg: dict, seed: int, score=None) -> dict:
    """One per-budget search (`cfg`: the `search` section's schedule keys) on `window`, scoring a
    network (its benchmark key) by `score` (default: one of its trainings, `noisy_score`)."""
    genome = TabularGenome(table)
    budget_cfg = cfg | {"min_budget_fraction": window.fraction}
    rows = STRATEGIES[name](genome, ScoreCache(score or noisy_score(table, seed), genome), window.name, window.hi,
                            budget_cfg, seed)
    distinct = len({r["arch"] for r in rows})
    return found(table, rows, window) | {"evaluations": distinct}


def run_pareto(table: MacroTable, wins: list[Window], cfg: dict, seed: int, score=None) -> list[dict]:
    """One NSGA-II search over the range the windows span, with the evaluations per-budget search
    spends on all of them together (population and children per generation scaled alike); `score`
    as in `run_strategy`."""
    genome, k = TabularGenome(table), len(wins)
    front, rows = pareto_search(genome, score or noisy_score(table, seed), min(w.lo for w in wins),
                                max(w.hi for w in wins), k * n_evaluations(cfg), seed,
                                population=k * cfg["population"],
                                offspring=k * (cfg["mutations"] + cfg["crossovers"]),
                                mutation_prob=cfg["mutation_prob"], crossover=cfg["crossover"])
    return [found(table, rows, w) | {"evaluations": len(rows), "front": len(front)} for w in wins]


def paired_difference(a, b, seed: int = 0, resamples: int = 9999) -> dict:
    """mean(a - b) over paired runs, with scipy's BCa bootstrap interval (a point interval when
    every difference is the same)."""
    from scipy.stats import bootstrap

    d = np.asarray(a, float) - np.asarray(b, float)
    mean = float(d.mean())
    if np.ptp(d) == 0:
        return {"mean": mean, "ci": [mean, mean], "n": len(d)}
    res = bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=CONFIDENCE, method="BCa",
                    rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return {"mean": mean, "ci": [float(ci.low), float(ci.high)], "n": len(d)}
