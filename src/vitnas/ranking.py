"""Ranking quality of a supernet: how well its inherited-weight scores order the reference
architectures by their stand-alone accuracy (vitnas.reference).

Reported over every reference architecture and over those in the supernet's own budget window
(the ones its search chooses among), each with Kendall tau and Spearman rho, their 95 % bootstrap
intervals, and the ceiling on the same architectures: the tau between two stand-alone seeds.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .arch import Arch
from .reference import ceiling, load
from .stats import rank_correlations_ci


def measure(score, table: pd.DataFrame, budget: str | None, resamples: int, seed: int) -> dict:
    """`score(arch)` for every reference architecture, and its rank correlations with the
    stand-alone accuracies (`table` as `vitnas.reference.load` returns it)."""
    inherited = np.array([score(Arch.from_json(a)) for a in table["arch"]], float)
    scopes = {"all": np.ones(len(table), bool)}
    if budget and budget in set(table["budget"].astype(str)):
        scopes["window"] = (table["budget"].astype(str) == budget).to_numpy()
    out = {"budget": budget or "shared", "n_archs": len(table), "scopes": {}}
    for name, mask in scopes.items():
        sub = table[mask]
        corr = rank_correlations_ci(inherited[mask], sub["accuracy"], resamples, seed)
        out["scopes"][name] = corr | {"n_archs": int(mask.sum()),
                                      "ceiling": ceiling(sub, resamples, seed)}
    out["archs"] = [{"index": int(r["index"]), "budget": str(r["budget"]), "macs": int(r["macs"]),
                     "inherited_accuracy": float(acc), "standalone_accuracy": float(r["accuracy"])}
                    for acc, (_, r) in zip(inherited, table.iterrows())]
    return out


def against_reference(score, cfg: dict, reference_csv, budget: str | None) -> dict:
    """`measure` against the reference stage's table (`reference_csv`), with the config's bootstrap
    resamples and seed."""
    return measure(score, load(reference_csv), budget, cfg["reference"]["bootstrap"], cfg["seed"])


def run(cfg: dict, data_dir, supernet_path, reference_csv, budget: str | None, out, threads: int = 1) -> dict:
    """The ranking stage: load the supernet, score the reference architectures on the held-out
    split (`search.eval_images` of it), measure, write `out`; returns what it wrote."""
    from .engine import resolve_device, set_threads
    from .io import write_json
    from .loader import held_out_images
    from .supernet.train import load_supernet, scorer

    set_threads(threads)
    device = resolve_device(cfg["device"])
    net = load_supernet(cfg, supernet_path, device)
    held_out = held_out_images(cfg, data_dir, cfg["search"]["eval_images"], net.space.img_size, device)
    score = scorer(net, held_out, cfg["search"]["eval_batch_size"], device)
    result = against_reference(score, cfg, reference_csv, budget) | {"held_out_images": len(held_out)}
    write_json(out, result)
    return result
