"""How good a search strategy is, where the answer is known: runs `evolve`, `random_search` and
`pareto_search` on NAS-Bench-Macro (`vitnas.tabular`) and scores what they return by regret.

A run sees noisy scores (one of three trainings per network, seeded by the run) and returns its
best-scoring in-window network; it is judged on the mean accuracy: regret against the window's best
and percentile within the window. Strategies compare at equal distinct evaluations and the same
seeds (the same noise draw), so differences are paired.

The study (`sizes`, `study`): every strategy at each search size in windows at cost percentiles of
the table, as runs, mean regret curves and a summary per (size, window); `search_quality_report`
writes it, for the `search_quality` rule and benchmarks/search_quality.py alike.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .pareto import pareto_search, schedule
from .search import ScoreCache, evolve, n_evaluations, random_search
from .tabular import MacroTable, TabularGenome, judge, load_macro, noisy_score

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
    front, rows = pareto_search(TabularGenome(table), score or noisy_score(table, seed), min(w.lo for w in wins),
                                max(w.hi for w in wins), seed=seed, **schedule(cfg, len(wins)))
    return [found(table, rows, w) | {"evaluations": len(rows), "front": len(front)} for w in wins]


def paired_difference(a, b, seed: int = 0, resamples: int = 9999) -> dict:
    """mean(a - b) over paired runs, with scipy's BCa bootstrap interval (a point interval when
    every difference is the same)."""
    from scipy.stats import bootstrap

    d = np.asarray(a, float) - np.asarray(b, float)
    mean, sd = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    if np.ptp(d) == 0:
        return {"mean": mean, "ci": [mean, mean], "n": len(d), "sd": sd}
    res = bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=CONFIDENCE, method="BCa",
                    rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return {"mean": mean, "ci": [float(ci.low), float(ci.high)], "n": len(d), "sd": sd}


# ---------------------------------------------------------------------------------------- claims

SCHEDULE = ("population", "generations", "parents", "mutations", "crossovers", "mutation_prob", "crossover")
CLAIM_SEEDS = range(30)  # search seeds per known-answer claim row (seconds on the table)


def _schedule(search: dict) -> dict:
    """A family's `search` section as the tabular searches read it: its sizes and operators only
    (its own initial draw and crossover kind have no meaning on the table)."""
    return {k: search[k] for k in SCHEDULE}


def evolution_vs_random(search: dict, seeds=CLAIM_SEEDS) -> tuple[Window, dict]:
    """Evolution against random search at a family's search size (its `search` section), in a
    window at the table's median cost with the family's min_budget_fraction: the paired difference
    of regrets random - evolution over `seeds` (positive: evolution returns better networks)."""
    table = load_macro()
    (win,) = windows(table, (50,), search["min_budget_fraction"])
    cfg = _schedule(search)
    regrets = {s: [run_strategy(s, table, win, cfg, seed)["regret"] for seed in seeds]
               for s in ("evolution", "random")}
    return win, paired_difference(regrets["random"], regrets["evolution"])


def pareto_percentiles(k: int) -> list[float]:
    """Where k budgets' windows sit in the table's cost: evenly from its 25th to its 90th percentile
    (the median for one budget), as the benchmark's windows."""
    return [50.0] if k == 1 else [float(round(q)) for q in np.linspace(25, 90, k)]


def pareto_vs_evolution(search: dict, k: int, seeds=CLAIM_SEEDS) -> list[tuple[Window, dict]]:
    """One Pareto search for k windows against k per-budget evolutions at equal total evaluations:
    per window the paired difference of regrets evolution - pareto over `seeds` (positive: the
    Pareto search's pick is better)."""
    table = load_macro()
    wins = windows(table, pareto_percentiles(k), search["min_budget_fraction"])
    cfg = _schedule(search)
    evo = [[run_strategy("evolution", table, w, cfg, seed)["regret"] for seed in seeds] for w in wins]
    par = [run_pareto(table, wins, cfg, seed) for seed in seeds]
    return [(w, paired_difference(evo[i], [p[i]["regret"] for p in par])) for i, w in enumerate(wins)]


# ---------------------------------------------------------------------------------------- the study

PERCENTILES = (25, 50, 75, 90)
COVERAGE = 0.25  # evaluations / window size at most this for a comparison that means something
SIZES = ("experiment", "vitas", "resnas", "vitas-paper", "resnas-paper")


@dataclass(frozen=True)
class Size:
    """One search size of the study: its schedule, window fraction, cost percentiles of the
    windows, and whether the Pareto search runs (not at the papers' full schedules)."""

    schedule: dict
    fraction: float
    percentiles: tuple
    pareto: bool


def sizes(search: dict, names=SIZES, own: str = "experiment") -> dict[str, Size]:
    """The sizes `names`: `own`, the search section `search` (its schedule and
    min_budget_fraction); the papers' proportions with fewer evaluations (`vitas`: 2 generations
    instead of 40; `resnas`: ÷ 12.5, in [0.75 C, C] windows); their full schedules in the widest
    window that holds them (`vitas-paper`, `resnas-paper`)."""
    base = {"mutation_prob": 0.3, "crossover": None}
    schedule = lambda p, g, k, m, c: base | {"population": p, "generations": g, "parents": k,
                                             "mutations": m, "crossovers": c}
    known = {
        own: Size(_schedule(search), search["min_budget_fraction"], PERCENTILES, True),
        "vitas": Size(schedule(50, 2, 25, 25, 25), 0.9, PERCENTILES, True),
        "resnas": Size(schedule(40, 19, 6, 6, 6), 0.75, PERCENTILES, True),
        "vitas-paper": Size(schedule(50, 40, 25, 25, 25), 0.5, (90,), False),
        "resnas-paper": Size(schedule(500, 19, 75, 75, 75), 0.5, (90,), False),
    }
    return {n: known[n] for n in names}


def run_size(table: MacroTable, name: str, size: Size, seeds: int) -> tuple[list[dict], list[dict]]:
    """Every run of one size on seeds 0..seeds-1: rows (one per strategy, window and seed) and the
    mean regret curves (per strategy and window, against evaluations per budget)."""
    wins = windows(table, size.percentiles, size.fraction)
    rows, curves = [], []
    for strategy in ("evolution", "random"):
        for w in wins:
            runs = [run_strategy(strategy, table, w, size.schedule, seed) for seed in range(seeds)]
            rows += [_row(name, strategy, w, seed, r) for seed, r in enumerate(runs)]
            curves.append((strategy, w.name, mean_curve([r["curve"] for r in runs]), 1))
    if size.pareto:
        per_seed = [run_pareto(table, wins, size.schedule, seed) for seed in range(seeds)]
        for i, w in enumerate(wins):
            runs = [found[i] for found in per_seed]
            rows += [_row(name, "pareto", w, seed, r) for seed, r in enumerate(runs)]
            curves.append(("pareto", w.name, mean_curve([r["curve"] for r in runs]), len(wins)))
    return rows, [{"size": name, "strategy": s, "window": wn, "evaluations_per_budget": (i + 1) / k,
                   "mean_regret": v} for s, wn, c, k in curves for i, v in enumerate(c)]


def mean_curve(curves) -> np.ndarray:
    """Mean over runs, NaN where no run has an in-window network yet (without numpy's warning)."""
    a = np.array(curves, float)
    n = np.sum(~np.isnan(a), axis=0)
    return np.where(n > 0, np.nansum(a, axis=0) / np.maximum(n, 1), np.nan)


def _row(size, strategy, w, seed, r) -> dict:
    return {"size": size, "strategy": strategy, "window": w.name, "fraction": w.fraction,
            "budget_flops": w.hi, "window_size": w.size, "seed": seed, "evaluations": r["evaluations"],
            "regret": r["regret"], "percentile": r["percentile"]}


def summarise(runs: pd.DataFrame, schedules: dict) -> pd.DataFrame:
    """Per size and window: mean regret and percentile per strategy, and the paired differences
    evolution - random and pareto - evolution with their intervals and verdicts."""
    out = []
    for (size, window), g in runs.groupby(["size", "window"], sort=False):
        by = {s: d.sort_values("seed") for s, d in g.groupby("strategy")}
        n = n_evaluations(schedules[size])
        row = {"size": size, "evaluations": n, "window": window, "fraction": g["fraction"].iloc[0],
               "window_size": int(g["window_size"].iloc[0]), "coverage": n / g["window_size"].iloc[0]}
        for s, d in by.items():
            row[f"{s}_regret"] = d["regret"].mean()
            row[f"{s}_percentile"] = d["percentile"].mean()
        for a, b in (("evolution", "random"), ("pareto", "evolution")):
            if a in by and b in by:
                diff = paired_difference(by[a]["regret"], by[b]["regret"])
                row[f"{a}_minus_{b}"], row[f"{a}_minus_{b}_ci"] = diff["mean"], diff["ci"]
                row[f"{a}_vs_{b}"] = verdict(a, b, diff["ci"])
        out.append(row)
    return pd.DataFrame(out)


def verdict(a: str, b: str, ci) -> str:
    """Which has the lower regret, from the interval of the difference a - b."""
    lo, hi = ci
    return f"{a} better" if hi < 0 else f"{b} better" if lo > 0 else "no difference shown"


@dataclass(frozen=True, eq=False)  # frames do not compare to one truth value
class Study:
    runs: pd.DataFrame  # one row per size, strategy, window and seed
    curves: pd.DataFrame  # mean regret against evaluations per budget
    summary: pd.DataFrame  # one row per (size, window)
    seconds: dict  # wall time per size


def study(chosen: dict[str, Size], seeds: int, table: MacroTable | None = None, echo=None) -> Study:
    """Every size of `chosen` (`sizes`) on seeds 0..seeds-1; `echo(name, seconds)` after each."""
    table = table if table is not None else load_macro()
    rows, curves, seconds = [], [], {}
    for name, size in chosen.items():
        t0 = time.perf_counter()
        r, c = run_size(table, name, size, seeds)
        seconds[name] = time.perf_counter() - t0
        rows, curves = rows + r, curves + c
        if echo:
            echo(name, seconds[name])
    runs = pd.DataFrame(rows)
    return Study(runs, pd.DataFrame(curves), summarise(runs, {n: s.schedule for n, s in chosen.items()}), seconds)
