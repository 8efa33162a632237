"""The ablation study of a family: one small supernet per arm (the full method, each technique
switched off or swapped in turn; for ViTAS also AutoFormer's own training), each measured the same
way.

The arms are defined by the family package (`ARMS`, read through vitnas.variants): overrides of
the `supernet` and `space` sections. The Snakemake rules, the CLI and the report all read them
(and `ablation.variants` picks which run). Every arm's supernet is trained for the smallest search
budget. Per arm:

- health: held-out top-1 of the smallest, the largest and `random_subnets` random sub-networks
  (drawn with identity probability 0.5 from one seeded stream, so every arm is judged on the same
  networks), training-loss stability from the training log (spikes and NaNs), and layer usage;
- ranking: Kendall tau and Spearman rho, with bootstrap intervals, between the inherited-weight
  held-out top-1 of the reference architectures (vitnas.reference, shared with the main
  supernets) and their stand-alone accuracy, next to the seed-to-seed ceiling;
- search: a small evolutionary search under the smallest budget (`vitnas.search.evolve`).

Every score is on the held-out `search` split, never `test`. Torch is imported only where needed.
"""
from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import replace
from pathlib import Path

from .config import validate
from .spaces import parse_macs
from .variants import family_variants, overrides, switch_keys

SPIKE_FACTOR = 1.5  # a logged loss above 1.5 x the running median of the previous rows is a spike
HEALTH_IDENTITY_PROB = 0.5  # random sub-networks of the health check: one distribution for all
LOG_ROWS = 50  # training-log rows per arm's supernet (finer than the default log_every)


# ------------------------------------------------------------------------------ configs
def variant_config(cfg: dict, name: str) -> dict:
    """The whole config of arm `name`: the arm's overrides merged over `supernet` and `space`,
    trained for `ablation.supernet_steps` steps with `ablation.threads` threads; validated."""
    over = overrides(cfg["space"]["family"], name)
    steps = cfg["ablation"]["supernet_steps"]
    out = copy.deepcopy(cfg)
    out["space"] = cfg["space"] | over.get("space", {})
    out["supernet"] = cfg["supernet"] | over.get("supernet", {}) | {
        "max_steps": steps, "threads": cfg["ablation"]["threads"],
        "log_every": max(1, steps // LOG_ROWS), "checkpoint_every": max(1, min(100, steps))}
    return validate(out)


def arm_description(cfg: dict, name: str) -> dict:
    """What an arm trains with, for the ablation table: its switches and its recipe."""
    vcfg = variant_config(cfg, name)
    sn, aug = vcfg["supernet"], vcfg["supernet"]["augment"]
    over = family_variants(cfg["space"]["family"])[name]
    recipe = "DeiT" if over.get("supernet", {}).get("recipe") == "deit" else "weak"
    switches = {k: sn[k] for k in switch_keys(cfg["space"]["family"])}
    if sn["sampling"] == "depth" and "identity_prob" in switches:  # no identity probability is drawn
        switches["identity_prob"] = "unused"
    switches |= {k: vcfg["space"][k] for arm in family_variants(cfg["space"]["family"]).values()
                 for k in arm.get("space", {})}
    return switches | {
        "recipe": recipe, "drop_path": sn["drop_path"], "mixup": aug["mixup"], "cutmix": aug["cutmix"],
        "randaugment": aug["randaugment"] or "-", "random_erasing": aug["random_erasing"]}


def search_config(cfg: dict) -> dict:
    """`search` with the ablation's small evolution settings merged over it."""
    return cfg["search"] | cfg["ablation"]["search"]


# ------------------------------------------------------------------------------ statistics
def count_spikes(losses, factor: float = SPIKE_FACTOR) -> int:
    """Rows whose loss exceeds `factor` x the median of all earlier (finite) rows."""
    import numpy as np

    spikes, seen = 0, []
    for loss in losses:
        loss = float(loss)
        if not math.isfinite(loss):
            continue
        if seen and loss > factor * float(np.median(seen)):
            spikes += 1
        seen.append(loss)
    return spikes


def count_nans(losses) -> int:
    return sum(not math.isfinite(float(x)) for x in losses)


# ------------------------------------------------------------------------------ stages
def run_variant(cfg: dict, variant: str, data_dir, supernet_path, train_log=None, health_out=None,
                reference=None, ranking_out=None, search_out=None, ckpt_dir=None) -> dict:
    """One arm. With `train_log`: train its supernet (for the smallest budget) into
    `supernet_path` (and write the log and, if given, `health_out`); otherwise load
    `supernet_path`. Then write whichever of `ranking_out` (needs `reference`, the reference
    stage's CSV) and `search_out` are given. Returns what was measured."""
    import pandas as pd

    from . import ranking
    from .engine import resolve_device, write_log
    from .io import read_json, write_json
    from .loader import held_out_images
    from .search import ScoreCache, best_of, evolve
    from .spaces import Sampler, sampling_record
    from .supernet.train import fit, health, load_supernet, save_supernet, scorer

    vcfg = variant_config(cfg, variant)
    sn, done = vcfg["supernet"], {}
    device = resolve_device(cfg["device"])
    budget = min(cfg["search"]["budgets"], key=parse_macs)
    usage_path = Path(supernet_path).with_name("usage.json")
    if train_log:
        if ckpt_dir is None:
            raise ValueError("training a variant supernet needs a checkpoint folder")
        # The supernet stage's own training (same samplers, same identity-probability logic); the
        # health check is the ablation's, below.
        from . import distributed

        net, log, usage = fit(vcfg, data_dir, ckpt_dir, distributed.setup(device), budget)
        save_supernet(net, supernet_path)
        write_log(log, train_log)
        write_json(usage_path, usage)
    else:
        net = load_supernet(vcfg, supernet_path, device)
    space = net.space
    held_out = held_out_images(cfg, data_dir, cfg["ablation"]["eval_images"], space.img_size, device)
    score = scorer(net, held_out, sn["eval_batch_size"], device)
    drawn = sampling_record(vcfg, space, budget)

    if health_out:
        # The same layer-wise draws at p = 0.5 for every arm, whatever it trained with.
        rng, common = random.Random(f"{cfg['seed']}-ablation-health"), replace(space, sampling="layerwise")
        randoms = [common.sample(rng, HEALTH_IDENTITY_PROB) for _ in range(cfg["ablation"]["random_subnets"])]
        losses = pd.read_csv(train_log or Path(supernet_path).with_name("train_log.csv"))["loss"]
        usage = read_json(usage_path) if usage_path.is_file() else {}
        done["health"] = {
            "variant": variant, "arm": arm_description(cfg, variant), "supernet": {k: sn[k] for k in switch_keys(cfg["space"]["family"])},
            "sampling_used": {k: drawn[k] for k in ("sampling", "identity_prob", "max_depth")},
            "augment": sn["augment"], "steps": sn["max_steps"], "budget": budget,
            **health(score, space, randoms, len(held_out)), "random_identity_prob": HEALTH_IDENTITY_PROB,
            "loss_spikes": count_spikes(losses), "loss_nans": count_nans(losses),
            "spike_factor": SPIKE_FACTOR, "log_rows": len(losses), "final_loss": float(losses.iloc[-1]),
            "usage": usage,
        }
        write_json(health_out, done["health"])

    if ranking_out:
        measured = ranking.against_reference(score, cfg, reference, budget)
        done["ranking"] = {"variant": variant, "held_out_images": len(held_out)} | measured
        write_json(ranking_out, done["ranking"])

    if search_out:
        sc = search_config(cfg) | {"eval_images": cfg["ablation"]["eval_images"]}
        history = evolve(space, ScoreCache(score, space), budget, parse_macs(budget), sc, cfg["seed"],
                         Sampler.from_record(space, drawn), len(held_out))
        best = best_of(history)
        done["search"] = {"variant": variant, "budget": budget, "budget_macs": parse_macs(budget),
                          "window": [best["window_lo"], best["window_hi"]],
                          "accuracy": best["accuracy"], "accuracy_se": best["accuracy_se"],
                          "macs": best["macs"], "params": best["params"],
                          "arch": json.loads(best["arch"]), "evaluations": len(history),
                          "held_out_images": len(held_out)}
        write_json(search_out, done["search"])
    return done
