"""Ranking against the known answer: a macro-family supernet trained on CIFAR-10 scores
NAS-Bench-Macro's networks with inherited weights, and its ranking and its searches are judged
against the benchmark's accuracies of the same networks trained alone (issue 18 §3).

Per ablation arm of the macro family (`full`, `no_shifting`, `no_budget_prob`): train the
supernet, score a FLOPs-stratified sample of the benchmark's encodings on the held-out split (each
network exported and its BatchNorm statistics recalibrated on training batches, as single-path
methods do; shift-equivalent encodings are one network and scored once), and measure Kendall tau
and Spearman rho against the benchmark's mean accuracy, overall and per budget window, beside the
ceiling (tau between two of the benchmark's own trainings) and the baseline any ranking must beat
(tau of FLOPs alone). Then, on the full arm's scores, evolution, random search and the Pareto
search pick a network per window; its benchmark accuracy gives the end-to-end regret.

Intervals: percentile bootstraps of tau / rho and of the paired differences (vitnas.stats), t
intervals over search runs. Every score is on the held-out split carved from train.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from . import stats
from .search_quality import Window, budget_windows, run_pareto, run_strategy
from .tabular import MacroTable, load_macro
from .variants import overrides, selected_variants

FAMILY = "macro"  # the family whose encodings NAS-Bench-Macro holds
STRATA = 10  # FLOPs deciles of the stratified sample
STRATEGIES = ("evolution", "random", "pareto")
PICKER = "evolution"  # the pipeline's own search: the pick the claims table judges
# The claims table's columns (vitnas.claims.COLUMNS; tests/test_known_answer.py checks they agree).
CLAIM_COLUMNS = ["claim", "scope", "measure", "n", "difference", "sd", "ci_lo", "ci_hi", "interval", "verdict",
                 "window"]


# ------------------------------------------------------------------------------ what is scored
def stratified_sample(flops: np.ndarray, n: int | None, seed: int, strata: int = STRATA) -> np.ndarray:
    """Row indices of `n` networks, an equal share from each FLOPs quantile bin (all rows when n
    is None or covers them). Nested: with one seed, a smaller sample is part of a larger one."""
    if n is None or n >= len(flops):
        return np.arange(len(flops))
    rng = np.random.default_rng(seed)
    order = np.argsort(flops, kind="stable")
    bins = np.array_split(order, strata)
    ranked = [rng.permutation(b) for b in bins]  # each bin's draw order; a sample takes its prefix
    share = [n // strata + (i < n % strata) for i in range(strata)]
    return np.sort(np.concatenate([b[:k] for b, k in zip(ranked, share)]))


def ceiling(table: MacroTable, rows: np.ndarray, resamples: int, seed: int) -> dict:
    """Kendall tau and Spearman rho between the benchmark's first two trainings (with intervals),
    and the mean tau over every pair of its trainings: how well one training ranks another."""
    acc = table.test_acc[rows]
    pairs = [(i, j) for i in range(acc.shape[1]) for j in range(i + 1, acc.shape[1])]
    out = stats.rank_correlations_ci(acc[:, 0], acc[:, 1], resamples, seed)
    return out | {"pairs_mean_tau": float(np.mean([stats.kendall_tau(acc[:, i], acc[:, j]) for i, j in pairs]))}


def measure(scores: np.ndarray, table: MacroTable, rows: np.ndarray, wins: list[Window], resamples: int,
            seed: int) -> dict:
    """The ranking of `scores` (one per row of `rows`) against the benchmark's mean accuracy, over
    all rows and within each window: tau / rho with intervals, the FLOPs baseline, the ceiling and
    tau(scores) - tau(FLOPs) with its paired interval."""
    scores = np.asarray(scores, float)
    flops, truth = table.flops[rows].astype(float), table.mean_acc[rows]
    scopes = {"all": np.ones(len(rows), bool)}
    scopes |= {w.name: (flops >= w.lo) & (flops <= w.hi) for w in wins}
    out = {}
    for name, mask in scopes.items():
        if mask.sum() < 3:
            out[name] = {"n": int(mask.sum())}
            continue
        out[name] = {"n": int(mask.sum()),
                     "supernet": stats.rank_correlations_ci(scores[mask], truth[mask], resamples, seed),
                     "flops": stats.rank_correlations_ci(flops[mask], truth[mask], resamples, seed),
                     "ceiling": ceiling(table, rows[mask], resamples, seed),
                     "supernet_minus_flops": stats.paired_tau_difference(scores[mask], flops[mask], truth[mask],
                                                                        resamples, seed)}
    return out


# ------------------------------------------------------------------------------ inherited weights
def recalibrate_bn(model, batches) -> None:
    """BatchNorm's running statistics of `model` re-estimated on `batches` (float tensors): reset,
    averaged cumulatively (momentum None) over every batch in train mode, then eval mode. No
    batches: left as they are."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    batches = list(batches)
    if not batches:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    model.eval()


def inherited_scorer(net, calibration: list, held_out, batch_size: int, device):
    """`score(arch)`: held-out top-1 (%) of `arch` exported from `net` with inherited weights,
    BatchNorm recalibrated on `calibration` (normalised float batches); any encoding is mapped to
    the supernet's canonical form first."""
    from .families import export
    from .loader import accuracy

    def score(arch) -> float:
        model = export(net, net.space.canonical(arch)).to(device)
        recalibrate_bn(model, calibration)
        return accuracy(model, held_out, batch_size, device)

    return score


def calibration_batches(cfg: dict, data_dir, img_size: int, device) -> list:
    """`known_answer.bn_batches` batches of `bn_batch_size` training images (a class-balanced
    subset fixed by the seed, with the evaluation transform), normalised, on `device`."""
    from .data import load_split
    from .loader import EvalImages

    ka = cfg["known_answer"]
    n = ka["bn_batches"] * ka["bn_batch_size"]
    if n == 0:
        return []
    split = load_split(data_dir, "train", cfg["data"]["dataset"]).subset(n, cfg["seed"])
    images = EvalImages.decode(split, img_size, split_name="train").to(device)
    return [x for x, _ in images.batches(ka["bn_batch_size"], device)]


# ------------------------------------------------------------------------------ arms
def arm_config(cfg: dict, arm: str) -> dict:
    """The config of ablation arm `arm`: its `supernet` overrides merged over the experiment's."""
    from .config import validate

    over = overrides(cfg["space"]["family"], arm)
    return validate(cfg | {"supernet": cfg["supernet"] | over.get("supernet", {}),
                           "space": cfg["space"] | over.get("space", {})})


def arms(cfg: dict) -> list[str]:
    """`known_answer.arms` (null: every arm of the family), checked; the first is the full method."""
    from .errors import ConfigError

    chosen = cfg["known_answer"]["arms"]
    every = selected_variants(cfg | {"ablation": cfg["ablation"] | {"variants": None}})
    names = every if chosen is None else list(chosen)
    unknown = [a for a in names if a not in every]
    if unknown or names[0] != every[0]:
        raise ConfigError(f"known_answer.arms: {', '.join(unknown) or names[0]} cannot be used; list arms of "
                          f"the {cfg['space']['family']} family ({', '.join(every)}), {every[0]} first")
    return names


def arm_cache(cfg: dict, arm: str, ckpt_dir: Path) -> Path:
    """Where arm `arm` keeps its training checkpoint, trained weights and scores: a folder keyed by
    the sections its supernet's training reads (vitnas.config.CHECKPOINT_SECTIONS), so a changed
    config trains afresh and a rerun with more networks or seeds reuses both."""
    from .config import checkpoint_hash

    return ckpt_dir / checkpoint_hash(arm_config(cfg, arm), "train_supernet") / arm


def scores_cache(cfg: dict, arm: str, ckpt_dir: Path) -> Path:
    """The arm's score cache, keyed also by what a score depends on beyond the weights."""
    from .config import section_hash

    ka = cfg["known_answer"]
    scoring = {"scoring": {k: ka[k] for k in ("eval_images", "bn_batches", "bn_batch_size")}}
    return arm_cache(cfg, arm, ckpt_dir) / f"scores-{section_hash(scoring, 'scoring')}.json"


def supernet_of(cfg: dict, arm: str, data_dir, out_dir: Path, ckpt_dir: Path, device):
    """The arm's trained supernet: loaded from its cache (`arm_cache`), or trained (resumable) and
    saved there; its training log is copied to `out_dir/<arm>/train_log.csv`. Returns (net,
    training seconds)."""
    import shutil

    from . import distributed
    from .engine import write_log
    from .io import atomic_path
    from .supernet.train import fit, load_supernet, save_supernet

    acfg, cache = arm_config(cfg, arm), arm_cache(cfg, arm, ckpt_dir)
    weights, log_path = cache / "supernet.safetensors", cache / "train_log.csv"
    t0, trained = time.time(), not weights.is_file()
    if trained:
        net, log, _ = fit(acfg, data_dir, cache / "train", distributed.setup(device))
        write_log(log, log_path)
        save_supernet(net, weights)  # last: its presence says the arm is trained
    else:
        net = load_supernet(acfg, weights, device)
    (out_dir / arm).mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / arm / "train_log.csv") as tmp:
        shutil.copyfile(log_path, tmp)
    return net.eval(), (time.time() - t0 if trained else 0.0)


def score_networks(score, space, table: MacroTable, rows: np.ndarray, cache_path: Path) -> np.ndarray:
    """`score` of the benchmark networks `rows`, each distinct network (by the space's key: one per
    shift class with identity shifting) scored once and kept in `cache_path` across runs."""
    from .families.macro.space import from_key
    from .search import ScoreCache

    cache = ScoreCache(score, space, cache_path)
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        out[i] = cache(from_key(table.keys[r]))
        if (i + 1) % 100 == 0:
            cache.save()
            print(f"[known answer] scored {i + 1} / {len(rows)}", file=sys.stderr)
    cache.save()
    return out


# ------------------------------------------------------------------------------ search
def search_runs(score_key, table: MacroTable, wins: list[Window], cfg: dict, seeds: int) -> list[dict]:
    """Evolution and random search per window and the Pareto search over all of them, for each seed,
    scoring a benchmark key by `score_key`; each run's pick judged on the benchmark's mean accuracy."""
    rows = []
    for seed in range(seeds):
        for strategy in STRATEGIES[:2]:
            for w in wins:
                found = run_strategy(strategy, table, w, cfg, seed, score_key)
                rows.append(_search_row(strategy, w, seed, found))
        for w, found in zip(wins, run_pareto(table, wins, cfg, seed, score_key)):
            rows.append(_search_row("pareto", w, seed, found))
    return rows


def _search_row(strategy: str, w: Window, seed: int, found: dict) -> dict:
    return {"strategy": strategy, "window": w.name, "window_lo": w.lo, "window_hi": w.hi, "window_size": w.size,
            "seed": seed, "regret": found["regret"], "percentile": found["percentile"],
            "top_percent": 100 - found["percentile"], "evaluations": found["evaluations"]}


# ------------------------------------------------------------------------------ claims
def claim_rows(full: dict, runs, top_percent: float, n_networks: int) -> list[dict]:
    """The claims table's two decided rows: tau(supernet) - tau(FLOPs) over all scored networks, and
    x - the mean share of the window above the pipeline's pick (evolution), over windows and seeds."""
    diff = full["all"]["supernet_minus_flops"]
    picks = [r["top_percent"] for r in runs if r["strategy"] == PICKER and math.isfinite(r["top_percent"])]
    margin = stats.mean_interval([top_percent - p for p in picks])
    rows = [
        {"claim": "the supernet ranks networks better than FLOPs alone", "scope": "NAS-Bench-Macro (CIFAR-10)",
         "measure": "Kendall tau(supernet, mean acc) - tau(FLOPs, mean acc)", "n": n_networks,
         "difference": diff["difference"], "sd": float("nan"), "ci_lo": diff["ci"][0], "ci_hi": diff["ci"][1],
         "interval": "paired bootstrap over networks", "verdict": stats.verdict(diff["ci"]), "window": "all"},
        {"claim": f"the pipeline's pick is within the window's top {top_percent:g} %",
         "scope": "NAS-Bench-Macro (CIFAR-10)",
         "measure": f"{top_percent:g} - % of the window above the pick (evolution on supernet scores)",
         "n": margin["n"], "difference": margin["mean"], "sd": margin["sd"], "ci_lo": margin["ci"][0],
         "ci_hi": margin["ci"][1], "interval": "t over windows x search seeds", "verdict": stats.verdict(margin["ci"]),
         "window": "every budget"},
    ]
    return rows


def switch_rows(scores: dict[str, np.ndarray], truth: np.ndarray, resamples: int, seed: int) -> list[dict]:
    """Each arm's tau (and rho) over all scored networks, and its paired tau difference to the
    first (full) arm."""
    names = list(scores)
    rows = []
    for arm in names:
        corr = stats.rank_correlations_ci(scores[arm], truth, resamples, seed)
        row = {"arm": arm, "n": len(truth), "kendall_tau": corr["kendall_tau"],
               "tau_lo": corr["kendall_tau_ci"][0], "tau_hi": corr["kendall_tau_ci"][1],
               "spearman_rho": corr["spearman_rho"], "rho_lo": corr["spearman_rho_ci"][0],
               "rho_hi": corr["spearman_rho_ci"][1]}
        if arm != names[0]:
            d = stats.paired_tau_difference(scores[arm], scores[names[0]], truth, resamples, seed)
            row |= {"minus_full": d["difference"], "minus_full_lo": d["ci"][0], "minus_full_hi": d["ci"][1],
                    "verdict": stats.verdict([-d["ci"][1], -d["ci"][0]])}  # "the technique helps"
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ the stage
def run(cfg: dict, data_dir, out_dir, ckpt_dir, threads: int = 1, table: MacroTable | None = None) -> dict:
    """Every arm's supernet, scores and ranking, then the searches on the full arm's scores; writes
    ranking.json, scores.csv, search.csv, switches.csv and claims.{csv,md} into `out_dir` and
    returns what ranking.json holds."""
    import pandas as pd

    from .engine import resolve_device, set_threads
    from .families.macro.space import from_key
    from .io import atomic_path, write_json
    from .loader import held_out_images

    set_threads(threads)
    ka, seed = cfg["known_answer"], cfg["seed"]
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    table = table or load_macro()
    device = resolve_device(cfg["device"])
    names = arms(cfg)
    rows = stratified_sample(table.flops, ka["networks"], seed)
    wins = budget_windows(table, cfg["search"]["budgets"], cfg["search"]["min_budget_fraction"])
    result = {"networks": len(rows), "windows": [w.__dict__ for w in wins], "arms": {}, "seconds": {}}
    scores, score_full = {}, None
    for arm in names:
        net, train_s = supernet_of(cfg, arm, data_dir, out_dir, ckpt_dir, device)
        held_out = held_out_images(cfg, data_dir, ka["eval_images"], net.space.img_size, device)
        calib = calibration_batches(cfg, data_dir, net.space.img_size, device)
        score = inherited_scorer(net, calib, held_out, cfg["search"]["eval_batch_size"], device)
        t0 = time.time()
        scores[arm] = score_networks(score, net.space, table, rows, scores_cache(cfg, arm, ckpt_dir))
        distinct = len({net.space.key(from_key(table.keys[r])) for r in rows})
        result["arms"][arm] = {"distinct_networks": distinct, "held_out_images": len(held_out),
                               "bn_images": sum(len(x) for x in calib),
                               "ranking": measure(scores[arm], table, rows, wins, ka["bootstrap"], seed)}
        result["seconds"][arm] = {"train": round(train_s, 1), "score": round(time.time() - t0, 1)}
        if arm == names[0]:
            from .search import ScoreCache

            cache = ScoreCache(score, net.space, scores_cache(cfg, arm, ckpt_dir))
            score_full = lambda key: cache(from_key(key))
    t0 = time.time()
    runs = search_runs(score_full, table, wins, cfg["search"], ka["search_seeds"])
    result["seconds"]["search"] = round(time.time() - t0, 1)
    result["search"] = {s: {w.name: stats.mean_interval([r["regret"] for r in runs
                                                          if r["strategy"] == s and r["window"] == w.name])
                            for w in wins} for s in STRATEGIES}
    claims = claim_rows(result["arms"][names[0]]["ranking"], runs, ka["top_percent"], len(rows))
    switches = switch_rows(scores, table.mean_acc[rows], ka["bootstrap"], seed)
    result["claims"], result["switches"] = claims, switches

    frame = pd.DataFrame({"key": [table.keys[r] for r in rows], "flops": table.flops[rows],
                          "mean_acc": table.mean_acc[rows]}
                         | {f"test_acc{i}": table.test_acc[rows, i] for i in range(table.test_acc.shape[1])}
                         | {f"score_{arm}": s for arm, s in scores.items()})
    tables = {"scores.csv": frame, "search.csv": pd.DataFrame(runs), "switches.csv": pd.DataFrame(switches),
              "claims.csv": pd.DataFrame(claims, columns=CLAIM_COLUMNS)}
    for name, df in tables.items():
        with atomic_path(out_dir / name) as tmp:
            df.to_csv(tmp, index=False)
    with atomic_path(out_dir / "claims.md") as tmp:
        tmp.write_text(tables["claims.csv"].to_markdown(index=False, floatfmt=".3f") + "\n")
    write_json(out_dir / "ranking.json", result)
    return result
