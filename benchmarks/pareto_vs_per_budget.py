"""One Pareto search against per-budget evolutions on a real supernet, at equal total evaluations:
the held-out accuracy of each budget's pick (results go into benchmarks/README.md).

    python benchmarks/pareto_vs_per_budget.py --supernet results/default/resnas/seed0/supernet/shared/supernet.safetensors \\
        --data results/default/data [--config config/config.yaml] [--space resnas] [--budgets 3M 4M] [--seeds 5] [--test]

For each search seed: one evolution per budget (`search.search_budget`, as the search stage runs
it) and one NSGA-II search over the range every budget's window spans (`pareto.search_budgets`, as
`search.mode: pareto` runs it), which spends the evaluations the per-budget searches spend
together. Each budget's pick is the best in-window network of its search by the search stage's
held-out scorer; the table gives, per budget, the paired difference pareto - per-budget of the
picks' held-out accuracy over the seeds with a 95 % percentile bootstrap interval
(`stats.bootstrap_ci`). Held-out accuracy is what each search maximised, so it carries the
selection's optimism; with --test every pick is also scored on the test split (inherited weights,
no retraining), which no search saw: the final-report number, labelled as such.

The supernet must be shared by every budget (supernet.per_budget: false), as a Pareto search needs.
Scores are deterministic (eval mode, fixed held-out images), so one score cache serves every search.
Writes --out/runs.csv (one row per seed, budget and strategy) and --out/summary.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from vitnas import config, stats
from vitnas.pareto import search_budgets
from vitnas.search import ScoreCache, best_of, n_evaluations, scoring, search_budget
from vitnas.spaces import window

ROOT = Path(__file__).resolve().parents[1]
RESAMPLES = 9999


def test_scorer(cfg: dict, data_dir, supernet_path):
    """`score(arch)` on the whole test split with inherited weights (final numbers only)."""
    from vitnas.data import load_split
    from vitnas.engine import resolve_device
    from vitnas.loader import split_accuracy
    from vitnas.supernet.train import load_supernet

    device = resolve_device(cfg["device"])
    net = load_supernet(cfg, supernet_path, device)
    split = load_split(data_dir, "test", cfg["data"]["dataset"])
    batch = cfg["search"]["eval_batch_size"]
    return lambda arch: split_accuracy(lambda x: net(x, net.space.canonical(arch)), cfg, split, "test",
                                       net.space.img_size, batch, device)[0]


def one_seed(cfg: dict, space, cache: ScoreCache, images: int, seed: int) -> list[dict]:
    """Per budget the per-budget evolution's pick and the Pareto search's pick for `seed`."""
    c = cfg | {"seed": seed}
    rows = []
    for b in cfg["search"]["budgets"]:
        history = search_budget(c, space, cache, "evolution", b, images)
        rows.append(_row(seed, b, "per_budget", best_of(history), len(history), len(history)))
    _, history, inside = search_budgets(c, space, cache, images)
    rows += [_row(seed, b, "pareto", best_of(found), len(found), len(history)) for b, found in inside.items()]
    return rows


def _row(seed, budget, strategy, pick, in_window, evaluations) -> dict:
    return {"seed": seed, "budget": budget, "strategy": strategy, "held_out": pick["accuracy"],
            "macs": pick["macs"], "arch": pick["arch"], "in_window": in_window, "evaluations": evaluations}


def summarise(runs: pd.DataFrame, column: str, resamples: int = RESAMPLES) -> pd.DataFrame:
    """Per budget: mean `column` of each strategy's pick and the paired difference pareto -
    per_budget over the seeds, with its 95 % bootstrap interval and verdict."""
    out = []
    for budget, g in runs.groupby("budget", sort=False):
        wide = g.pivot(index="seed", columns="strategy", values=column).sort_index()
        d = (wide["pareto"] - wide["per_budget"]).to_numpy(float)
        ci = stats.bootstrap_ci(lambda i: float(d[i].mean()), len(d), resamples, seed=0)
        n_in = g.pivot(index="seed", columns="strategy", values="in_window").mean()
        out.append({"budget": budget, "score": column, "seeds": len(d),
                    "per_budget": wide["per_budget"].mean(), "pareto": wide["pareto"].mean(),
                    "pareto_minus_per_budget": float(d.mean()), "ci_lo": ci[0], "ci_hi": ci[1],
                    "sd": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
                    "same_pick": float((g.pivot(index="seed", columns="strategy", values="arch")
                                        .nunique(axis=1) == 1).mean()),
                    "in_window_per_budget": n_in["per_budget"], "in_window_pareto": n_in["pareto"],
                    "verdict": _verdict(ci)})
    return pd.DataFrame(out)


def _verdict(ci) -> str:
    lo, hi = ci
    return "pareto better" if lo > 0 else "per-budget better" if hi < 0 else "no difference shown"


def markdown(summary: pd.DataFrame) -> str:
    lines = ["| budget | score | seeds | per-budget pick | Pareto pick | Pareto - per-budget [95 % CI] | SD | "
             "same pick | in-window evals per-budget / Pareto | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        lines.append(f"| {r['budget']} | {r['score']} | {r['seeds']} | {r['per_budget']:.2f} | {r['pareto']:.2f} | "
                     f"{r['pareto_minus_per_budget']:+.2f} [{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}] | {r['sd']:.2f} | "
                     f"{r['same_pick']:.0%} | {r['in_window_per_budget']:.0f} / {r['in_window_pareto']:.1f} | "
                     f"{r['verdict']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--config", nargs="+", default=[str(ROOT / "config" / "config.yaml")],
                    help="config files, merged in order (default config/config.yaml)")
    ap.add_argument("--space", default="resnas", help="a space with a shared supernet (default resnas)")
    ap.add_argument("--supernet", type=Path, required=True, help="the space's shared supernet.safetensors")
    ap.add_argument("--data", type=Path, required=True, help="the prepared data folder (search.npz, test.npz)")
    ap.add_argument("--budgets", nargs="+", default=["3M", "4M"], help="budgets searched (default 3M 4M)")
    ap.add_argument("--seeds", type=int, default=5, help="search seeds 0..N-1 (default 5)")
    ap.add_argument("--eval-images", type=int, default=None,
                    help="held-out images per score (search.eval_images; default: the config's)")
    ap.add_argument("--test", action="store_true", help="also score every pick on the test split")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "pareto_vs_per_budget", help="output folder")
    ap.add_argument("--summarise", action="store_true", help="only summarise --out/runs.csv (e.g. of a stopped run)")
    args = ap.parse_args()

    from vitnas.engine import set_threads
    from vitnas.errors import VitnasError

    set_threads(args.threads)
    cfg = config.for_space(config.load(*args.config), args.space)
    if cfg["supernet"]["per_budget"]:
        raise SystemExit(f"vitnas: spaces.{args.space}.supernet.per_budget is true; a Pareto search needs one "
                         "supernet shared by every budget (choose a space with per_budget: false)")
    cfg["search"] = cfg["search"] | {"budgets": list(args.budgets)} | (
        {"eval_images": args.eval_images} if args.eval_images else {})
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        return write_summary(pd.read_csv(args.out / "runs.csv"), cfg, args, "")
    try:
        space, score, images = scoring(cfg, args.data, args.supernet)
        on_test = ScoreCache(test_scorer(cfg, args.data, args.supernet), space) if args.test else None
    except VitnasError as e:
        raise SystemExit(f"vitnas: {e}")
    cache = ScoreCache(score, space)
    t0, test_s, rows = time.perf_counter(), 0.0, []
    for seed in range(args.seeds):
        found = one_seed(cfg, space, cache, images, seed)
        if on_test is not None:  # the picks on the test split, per seed, so a stopped run keeps them
            t1 = time.perf_counter()
            found = [r | {"test": on_test(space.canonical(_arch(r["arch"])))} for r in found]
            test_s += time.perf_counter() - t1
        rows += found
        pd.DataFrame(rows).to_csv(args.out / "runs.csv", index=False)
        print(f"seed {seed}: {len(cache.known)} distinct networks scored, {time.perf_counter() - t0:.0f} s",
              flush=True)
    seconds = (f"{time.perf_counter() - t0 - test_s:.0f} s of search for {args.seeds} seeds "
               f"({len(cache.known)} distinct networks scored, {images} held-out images each)"
               + (f", {test_s:.0f} s of test scoring" if args.test else ""))
    write_summary(pd.DataFrame(rows), cfg, args, seconds)


def write_summary(runs: pd.DataFrame, cfg: dict, args, seconds: str) -> None:
    tables = [summarise(runs, "held_out")] + ([summarise(runs, "test")] if "test" in runs else [])
    wins = {b: window(cfg, b) for b in args.budgets}
    n = n_evaluations(cfg["search"])
    text = (f"{args.space}, budgets {', '.join(f'{b} [{lo / 1e6:.4g}M, {hi / 1e6:.4g}M]' for b, (lo, hi) in wins.items())}; "
            f"{n} evaluations per budget, {len(wins) * n} for the Pareto search; search.eval_images "
            f"{cfg['search']['eval_images']}\n\n" + markdown(pd.concat(tables, ignore_index=True))
            + (f"\n{seconds}\n" if seconds else ""))
    (args.out / "summary.md").write_text(text)
    print(text)


def _arch(text: str):
    from vitnas.arch import Arch

    return Arch.from_json(text)


if __name__ == "__main__":
    main()
