"""Search quality on NAS-Bench-Macro: evolution, random search and the Pareto search (NSGA-II),
judged by regret against the known best network of each budget window (results go into
benchmarks/README.md).

    python benchmarks/search_quality.py [--seeds 30] [--out results/search_quality] [--sizes ...]

Every run sees noisy scores (one of the three trainings per network, drawn per run seed) and is
judged on the mean accuracy of the network it returns: regret (percentage points below the
window's best) and its percentile within the window. Strategies run at equal distinct evaluations
on the same seeds, so evolution - random and pareto - evolution are paired differences, with 95 %
BCa bootstrap intervals (scipy). The Pareto search runs once per seed over the range all the
size's windows span, with the evaluations the per-budget searches spend on all of them together.

Sizes: the embedded default's search (config/config.yaml); the papers' proportions with fewer
evaluations, so that they cover at most a quarter of each window (ViTAS: population 50, 25 parents,
25 + 25 children, 2 generations instead of 40; ViT-ResNAS: 500 + 19 x (75 + 75) with 75 parents,
divided by 12.5, in wider [0.75 C, C] windows, because its [0.975 C, C] windows hold only 173-274
networks); and the papers' full schedules in the widest window that holds them, where every
strategy sees much of the window and the comparison says little.

Writes to --out: runs.csv (one row per run and window), summary.csv / summary.md (the tables),
curves.csv and regret_vs_evaluations.{png,pdf} (mean regret against evaluations per budget).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from vitnas.search import n_evaluations
from vitnas.search_quality import paired_difference, run_pareto, run_strategy, windows
from vitnas.tabular import load_macro

ROOT = Path(__file__).resolve().parents[1]
PERCENTILES = (25, 50, 75, 90)
COVERAGE = 0.25  # evaluations / window size at most this for a comparison that means something


def default_schedule() -> dict:
    """The embedded default's search schedule (config/config.yaml, schema defaults beneath)."""
    from vitnas import config

    cfg = config.validate(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    keys = ("population", "generations", "parents", "mutations", "crossovers", "mutation_prob",
            "crossover", "min_budget_fraction")
    return {k: cfg["search"][k] for k in keys}


def sizes() -> dict:
    """name -> (schedule, window fraction, cost percentiles, whether the Pareto search runs)."""
    base = {"mutation_prob": 0.3, "crossover": None}
    schedule = lambda p, g, k, m, c: base | {"population": p, "generations": g, "parents": k,
                                             "mutations": m, "crossovers": c}
    default = default_schedule()
    return {
        "default": (default, default["min_budget_fraction"], PERCENTILES, True),
        "vitas": (schedule(50, 2, 25, 25, 25), 0.9, PERCENTILES, True),
        "resnas": (schedule(40, 19, 6, 6, 6), 0.75, PERCENTILES, True),
        "vitas-paper": (schedule(50, 40, 25, 25, 25), 0.5, (90,), False),
        "resnas-paper": (schedule(500, 19, 75, 75, 75), 0.5, (90,), False),
    }


def run_size(table, name: str, cfg: dict, fraction: float, percentiles, pareto: bool, seeds: int):
    """Every run of one size: rows (one per strategy, window and seed) and mean curves."""
    wins = windows(table, percentiles, fraction)
    rows, curves = [], []
    for strategy in ("evolution", "random"):
        for w in wins:
            runs = [run_strategy(strategy, table, w, cfg, seed) for seed in range(seeds)]
            rows += [_row(name, strategy, w, seed, r) for seed, r in enumerate(runs)]
            curves.append((strategy, w.name, np.nanmean([r["curve"] for r in runs], axis=0), 1))
    if pareto:
        per_seed = [run_pareto(table, wins, cfg, seed) for seed in range(seeds)]
        for i, w in enumerate(wins):
            runs = [found[i] for found in per_seed]
            rows += [_row(name, "pareto", w, seed, r) for seed, r in enumerate(runs)]
            curves.append(("pareto", w.name, _nanmean_curves([r["curve"] for r in runs]), len(wins)))
    return rows, [{"size": name, "strategy": s, "window": wn, "evaluations_per_budget": (i + 1) / k,
                   "mean_regret": v} for s, wn, c, k in curves for i, v in enumerate(c)]


def _nanmean_curves(curves) -> np.ndarray:
    """Mean over runs, NaN where no run has an in-window network yet (without numpy's warning)."""
    a = np.array(curves, float)
    n = np.sum(~np.isnan(a), axis=0)
    return np.where(n > 0, np.nansum(a, axis=0) / np.maximum(n, 1), np.nan)


def _row(size, strategy, w, seed, r) -> dict:
    return {"size": size, "strategy": strategy, "window": w.name, "fraction": w.fraction,
            "budget_flops": w.hi, "window_size": w.size, "seed": seed, "evaluations": r["evaluations"],
            "regret": r["regret"], "percentile": r["percentile"]}


def summarise(runs: pd.DataFrame, schedules: dict) -> pd.DataFrame:
    """Per size and window: mean regret and percentile per strategy, the paired differences."""
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


def markdown(summary: pd.DataFrame) -> str:
    fmt = lambda x, d=3: "" if x != x else f"{x:.{d}f}"
    ci = lambda row, k: "" if not isinstance(row.get(k), list) else (
        f"{row[k.removesuffix('_ci')]:+.3f} [{row[k][0]:+.3f}, {row[k][1]:+.3f}]")
    lines = ["| size | evals | window | networks | coverage | regret evo / rand / pareto | "
             "percentile evo / rand / pareto | evo - rand [95 % CI] | pareto - evo [95 % CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        r = r.to_dict()
        lines.append(
            f"| {r['size']} | {r['evaluations']} | {r['window']} [{r['fraction']:g} C, C] | {r['window_size']} | "
            f"{r['coverage']:.0%}{'' if r['coverage'] <= COVERAGE else ' (over 1/4)'} | "
            f"{fmt(r.get('evolution_regret', np.nan))} / {fmt(r.get('random_regret', np.nan))} / "
            f"{fmt(r.get('pareto_regret', np.nan))} | "
            f"{fmt(r.get('evolution_percentile', np.nan), 1)} / {fmt(r.get('random_percentile', np.nan), 1)} / "
            f"{fmt(r.get('pareto_percentile', np.nan), 1)} | "
            f"{ci(r, 'evolution_minus_random_ci')} | {ci(r, 'pareto_minus_evolution_ci')} |")
    return "\n".join(lines) + "\n"


def figure(curves: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(curves["size"]))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for strategy, d in curves[curves["size"] == name].groupby("strategy", sort=False):
            mean = d.groupby("evaluations_per_budget")["mean_regret"].mean()  # over the windows
            ax.plot(mean.index, mean.values, label=strategy)
        ax.set(title=name, xlabel="evaluations per budget", xscale="log", yscale="log")
    axes[0][0].set_ylabel("mean regret (points)")
    axes[0][0].legend()
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"regret_vs_evaluations.{ext}", dpi=150)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=30, help="search seeds per strategy and window (default 30)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "search_quality", help="output folder")
    ap.add_argument("--sizes", nargs="*", default=None, help=f"which sizes (default all: {', '.join(sizes())})")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table, chosen = load_macro(), sizes()
    names = args.sizes or list(chosen)
    rows, curves, times = [], [], {}
    for name in names:
        cfg, fraction, percentiles, pareto = chosen[name]
        t0 = time.perf_counter()
        r, c = run_size(table, name, cfg, fraction, percentiles, pareto, args.seeds)
        times[name] = time.perf_counter() - t0
        rows += r
        curves += c
        print(f"{name}: {n_evaluations(cfg)} evaluations, {times[name]:.1f} s", flush=True)
    runs, curves = pd.DataFrame(rows), pd.DataFrame(curves)
    summary = summarise(runs, {n: chosen[n][0] for n in names})
    runs.to_csv(args.out / "runs.csv", index=False)
    curves.to_csv(args.out / "curves.csv", index=False)
    summary.to_csv(args.out / "summary.csv", index=False)
    text = markdown(summary) + "\nSeconds per size: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + "\n"
    (args.out / "summary.md").write_text(text)
    figure(curves, args.out)
    print(text)


if __name__ == "__main__":
    main()
