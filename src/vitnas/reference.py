"""The reference that ranking quality is measured against: stand-alone accuracies of fixed
architectures, trained from scratch with more than one seed.

- Architectures: `reference.archs_per_budget` per budget window [fraction x C, C], one per
  equal-width MACs stratum of the window, seeded by `seed` and independent of any supernet. Kept
  in raw form (identities where drawn): each supernet maps them to its own canonical form, and the
  stand-alone ViT only sees the blocks.
- Training: the retrain recipe for `reference.steps` steps, once per seed (seed, seed+1, ...);
  scored on the held-out search split (never test), with its binomial standard error.
- The reference accuracy of an architecture is the mean over seeds; the Kendall tau between two
  seeds' accuracies is the ceiling any supernet can be expected to reach against it.
"""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pandas as pd

from .arch import Arch
from .search import accuracy_se
from .families import build_space
from .spaces import format_macs, window
from .stats import rank_correlations_ci

RAW_IDENTITY_PROB = 0.5  # reference architectures: every layer pattern equally likely


def reference_archs(cfg: dict) -> list[tuple[str, Arch]]:
    """(budget, architecture) pairs: `archs_per_budget` per budget window, stratified over MACs."""
    raw_cfg = copy.deepcopy(cfg)
    raw_cfg["supernet"] = cfg["supernet"] | {"identity_shifting": False, "sampling": "layerwise"}
    space = build_space(raw_cfg)
    n = cfg["reference"]["archs_per_budget"]
    out = []
    for budget in cfg["search"]["budgets"]:
        rng = random.Random(f"{cfg['seed']}-reference-{budget}")
        lo, hi = window(cfg, budget)
        lo = lo or space.macs_range()[0]  # fraction 0: from the smallest network up
        edges = [lo + (hi - lo) * i / n for i in range(n + 1)]
        out += [(budget, space.sample_within(rng, a, b, RAW_IDENTITY_PROB)) for a, b in zip(edges, edges[1:])]
    return out


def training_seeds(cfg: dict) -> list[int]:
    """The stand-alone training seeds: seed, seed + 1, ... (`reference.seeds` of them)."""
    return [cfg["seed"] + k for k in range(cfg["reference"]["seeds"])]


def run(cfg: dict, data_dir, out_csv, ckpt_dir, seeds: list[int] | None = None) -> pd.DataFrame:
    """Train every reference architecture with each of `seeds` (default: all training seeds);
    one row per (architecture, seed)."""
    import torch

    from . import distributed
    from .batches import train_batches
    from .data import load_split
    from .engine import resolve_device, train
    from .loader import accuracy, held_out_images
    from .io import atomic_path
    from .families import build_model

    ref = cfg["reference"]
    rt = cfg["retrain"] | {"max_steps": ref["steps"], "log_every": max(1, ref["steps"] // 10),
                           "checkpoint_every": max(1, min(100, ref["steps"]))}
    ctx = distributed.setup(resolve_device(cfg["device"]))
    space = build_space(cfg)
    train_split = load_split(data_dir, "train", cfg["data"]["dataset"])
    held_out = held_out_images(cfg, data_dir, ref["eval_images"], space.img_size, ctx.device)
    archs = reference_archs(cfg)
    seeds = training_seeds(cfg) if seeds is None else seeds
    rows = []
    for seed in seeds:
        for i, (budget, arch) in enumerate(archs):
            torch.manual_seed(seed)
            model = build_model(arch, space, drop_path=rt["drop_path"], patch_head=rt["patch_mixup"])
            batches = train_batches(cfg | {"seed": seed, "retrain": rt}, "retrain", train_split, space,
                                    distributed.Context(),  # one unsharded stream per reference run
                                    model.patch_grid if rt["patch_mixup"] else None)  # the retrain recipe's
            desc = f"reference {i + 1}/{len(archs)} seed {seed}"
            log = train(model, lambda m, x, step: m(x), batches, rt, Path(ckpt_dir) / f"seed{seed}-arch{i}",
                        desc, ctx)
            model.eval()
            acc = accuracy(model, held_out, rt["eval_batch_size"], ctx.device)
            rows.append({"index": i, "budget": budget, "seed": seed,
                         "arch": json.dumps(arch.to_dict(), separators=(",", ":")),
                         "macs": space.macs(arch), "params": space.params(arch), "depth": arch.depth,
                         "accuracy": acc, "accuracy_se": accuracy_se(acc, len(held_out)),
                         "final_loss": log[-1]["loss"] if log else float("nan"), "steps": ref["steps"],
                         "held_out_images": len(held_out)})
            print(f"[reference] {desc}: {format_macs(space.macs(arch))} MACs, held-out top-1 {acc:.2f}",
                  flush=True)
    df = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    return df


def merge(parts, out_csv) -> pd.DataFrame:
    """One table from the per-seed tables, in seed order."""
    from .io import atomic_path

    df = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True).sort_values(["seed", "index"], kind="stable")
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    return df


def load(path) -> pd.DataFrame:
    """One row per reference architecture: its mean accuracy over seeds, and per seed a column."""
    df = pd.read_csv(path)
    per_seed = df.pivot_table(index=["index", "budget", "arch", "macs", "params", "depth"], columns="seed",
                              values="accuracy").add_prefix("seed")
    wide = per_seed.assign(accuracy=per_seed.mean(axis=1)).reset_index()
    wide.columns.name = None
    return wide.sort_values(["budget", "index"], key=lambda s: s if s.name != "budget" else s.map(str)
                            ).reset_index(drop=True)


def ceiling(table: pd.DataFrame, resamples: int, seed: int) -> dict:
    """Kendall tau and Spearman rho between the first two seeds' stand-alone accuracies (with
    bootstrap intervals): how well the reference ranks itself. NaN with a single seed."""
    seeds = [c for c in table.columns if str(c).startswith("seed")]
    if len(seeds) < 2:
        nan = float("nan")
        return {"kendall_tau": nan, "kendall_tau_ci": [nan, nan], "spearman_rho": nan,
                "spearman_rho_ci": [nan, nan], "seeds": seeds, "n_archs": len(table)}
    out = rank_correlations_ci(table[seeds[0]], table[seeds[1]], resamples, seed)
    return out | {"seeds": seeds[:2], "n_archs": len(table)}
