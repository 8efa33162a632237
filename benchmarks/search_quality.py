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

The study is `vitnas.search_quality.study` and its writer `vitnas.search_quality_report.write_study`,
the code the pipeline's `search_quality` rule runs (there at the experiment's own search size).
Writes to --out: runs.csv (one row per run and window), summary.csv / summary.md (the tables),
curves.csv and regret_vs_evaluations.{png,pdf} (mean regret against evaluations per budget).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from vitnas.search import n_evaluations
from vitnas.search_quality import SIZES, sizes, study
from vitnas.search_quality_report import markdown, write_study

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("default",) + SIZES[1:]  # the embedded default's search under its own name


def default_search() -> dict:
    """The embedded default's search section (config/config.yaml, schema defaults beneath)."""
    from vitnas import config

    return config.validate(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))["search"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=30, help="search seeds per strategy and window (default 30)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "search_quality", help="output folder")
    ap.add_argument("--sizes", nargs="*", default=None, choices=NAMES, help=f"which sizes (default all: {', '.join(NAMES)})")
    args = ap.parse_args()
    chosen = sizes(default_search(), args.sizes or NAMES, own="default")
    result = study(chosen, args.seeds, echo=lambda n, s: print(
        f"{n}: {n_evaluations(chosen[n].schedule)} evaluations, {s:.1f} s", flush=True))
    write_study(result, args.out)
    print(markdown(result.summary))


if __name__ == "__main__":
    main()
