"""benchmarks/pareto_vs_per_budget.py: one Pareto search against per-budget evolutions of a real
family's space at equal total evaluations, and the paired summary of the picks."""
import importlib.util

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from vitnas import config, stats
from vitnas.families import build_space
from vitnas.search import ScoreCache, n_evaluations
from vitnas.spaces import window

spec = importlib.util.spec_from_file_location("pareto_vs_per_budget", REPO / "benchmarks" / "pareto_vs_per_budget.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

SMALL = {"population": 4, "generations": 1, "parents": 2, "mutations": 2, "crossovers": 2, "budgets": ["3M", "4M"]}


def test_one_seed_spends_equal_evaluations_and_picks_inside_each_window():
    cfg = config.for_space(config.load(str(REPO / "config" / "config.yaml")), "resnas")
    cfg["search"] = cfg["search"] | SMALL
    space = build_space(cfg)
    # A deterministic stand-in for the held-out scorer: no supernet needed to count evaluations.
    cache = ScoreCache(lambda arch: float(space.params(arch) % 997) / 10, space)
    rows = bench.one_seed(cfg, space, cache, images=0, seed=0)
    assert [(r["budget"], r["strategy"]) for r in rows] == [
        ("3M", "per_budget"), ("4M", "per_budget"), ("3M", "pareto"), ("4M", "pareto")]
    n = n_evaluations(cfg["search"])
    for r in rows:
        lo, hi = window(cfg, r["budget"])
        assert lo <= r["macs"] <= hi
        seen = len(cache.known)
        assert r["held_out"] == cache(bench._arch(r["arch"])) and len(cache.known) == seen  # a scored network
        assert r["evaluations"] == (n if r["strategy"] == "per_budget" else 2 * n)  # equal in total
    assert bench.one_seed(cfg, space, cache, images=0, seed=0) == rows  # seeded


def test_summary_is_the_paired_difference_with_the_stats_bootstrap():
    held = {("3M", "per_budget"): [80.0, 81.0, 79.5], ("3M", "pareto"): [80.5, 80.0, 80.5],
            ("4M", "per_budget"): [83.0, 83.0, 83.0], ("4M", "pareto"): [83.0, 83.0, 83.0]}
    runs = pd.DataFrame([{"seed": s, "budget": b, "strategy": st, "held_out": v, "arch": f"{b}{st}{s}",
                          "in_window": 8, "evaluations": 8}
                         for (b, st), vals in held.items() for s, v in enumerate(vals)])
    out = bench.summarise(runs, "held_out", resamples=999)
    d = np.array([0.5, -1.0, 1.0])
    row = out.iloc[0]
    assert row["budget"] == "3M" and row["seeds"] == 3
    assert row["pareto_minus_per_budget"] == pytest.approx(d.mean(), abs=1e-12)
    assert [row["ci_lo"], row["ci_hi"]] == stats.bootstrap_ci(lambda i: float(d[i].mean()), 3, 999, seed=0)
    assert row["verdict"] == "no difference shown" and row["same_pick"] == 0
    assert out.iloc[1]["pareto_minus_per_budget"] == 0 and out.iloc[1]["ci_lo"] == out.iloc[1]["ci_hi"] == 0
