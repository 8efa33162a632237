"""The ViTAS ablation study: one small supernet per arm (the full method, each technique switched
off or swapped in turn, then AutoFormer's own training), each measured the same way.

`VARIANTS` is the one definition of the study: an arm is a dict of overrides of the `supernet`
config section. The Snakemake rules, the CLI and the report all read it (and `ablation.variants`
picks which of them run). Every arm's supernet is trained for the smallest search budget. Per arm:

- health: held-out top-1 of the smallest, the largest and `random_subnets` random sub-networks
  (drawn with identity probability 0.5 from one seeded stream, so every arm is judged on the same
  networks), training-loss stability from the training log (spikes and NaNs), and layer usage;
- ranking: Kendall tau and Spearman rho, with bootstrap intervals, between the inherited-weight
  held-out top-1 of the reference architectures (vitnas.reference, shared with the main
  supernets) and their stand-alone accuracy, next to the seed-to-seed ceiling;
- search: a small evolutionary search under the smallest budget (`vitnas.search.evolve`).

Every score is on the held-out `search` split, never `test`. Torch is imported only where needed,
so the Snakefile can read `VARIANTS` cheaply.
"""
from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import replace
from pathlib import Path

from .config import ConfigError, validate
from .spaces import parse_macs

# A `recipe` override: train the supernet with DeiT's full recipe instead of ViTAS's weak one.
DEIT_SUPERNET_RECIPE = {
    "augment": {"scale": [0.08, 1.0], "hflip": 0.5, "random_erasing": 0.25, "cutmix": 1.0, "mixup": 0.8,
                "label_smoothing": 0.1, "randaugment": "rand-m9-mstd0.5-inc1", "color_jitter": 0.4},
    "drop_path": 0.1,
}

# The full ViTAS method: private tokens per patch size, private Q/K per head count, cyclic channel
# sharing, identity shifting, layer-wise sampling with the budget-driven identity probability;
# weak augmentation is `supernet.augment` as configured. Then each technique off (or swapped) in
# turn, in the order ViTAS adds them, then AutoFormer's own supernet training.
FULL = {"private_tokens": True, "private_qk": True, "sharing": "cyclic", "identity_shifting": True,
        "sampling": "layerwise", "identity_prob": "budget"}
VARIANTS: dict[str, dict] = {
    "full": FULL,
    "no_private_tokens": FULL | {"private_tokens": False},
    "no_private_qk": FULL | {"private_qk": False},
    "no_cyclic": FULL | {"sharing": "prefix"},
    "bilateral": FULL | {"sharing": "bilateral"},  # ViTAS v1's released sharing (BCNet)
    "no_shifting": FULL | {"identity_shifting": False},
    "no_budget_prob": FULL | {"identity_prob": 0.5},
    "depth_sampling": FULL | {"sampling": "depth"},  # the other sampler under identity shifting
    "no_weak_aug": FULL | {"recipe": "deit"},
    # AutoFormer: a uniform depth whose first layers compute (what identity shifting means), uniform
    # width choices, first-k (prefix) weight entanglement, one class token and patch embedding,
    # shared Q/K.
    "autoformer": {"private_tokens": False, "private_qk": False, "sharing": "prefix",
                   "identity_shifting": True, "sampling": "depth", "identity_prob": 0.5},
}
SWITCHES = tuple(FULL)  # the supernet keys the arms set, as recorded in health.json
SPIKE_FACTOR = 1.5  # a logged loss above 1.5 x the running median of the previous rows is a spike
HEALTH_IDENTITY_PROB = 0.5  # random sub-networks of the health check: one distribution for all
LOG_ROWS = 50  # training-log rows per arm's supernet (finer than the default log_every)


# ------------------------------------------------------------------------------ configs
def selected_variants(cfg: dict) -> list[str]:
    """The variants `ablation.variants` names (null: all of them), in `VARIANTS` order."""
    chosen = cfg["ablation"]["variants"]
    for name in chosen or ():
        check_variant(name)
    return [v for v in VARIANTS if chosen is None or v in chosen]


def check_variant(name: str) -> None:
    if name not in VARIANTS:
        raise ConfigError(f"ablation: unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def variant_config(cfg: dict, name: str) -> dict:
    """The whole config of variant `name`: `supernet` with the variant's overrides, trained for
    `ablation.supernet_steps` steps with `ablation.threads` threads; validated."""
    check_variant(name)
    ab = cfg["ablation"]
    over = copy.deepcopy(VARIANTS[name])
    recipe = over.pop("recipe", "weak")
    if recipe == "deit":
        over |= copy.deepcopy(DEIT_SUPERNET_RECIPE)
    steps = ab["supernet_steps"]
    over |= {"max_steps": steps, "threads": ab["threads"],
             "log_every": max(1, steps // LOG_ROWS), "checkpoint_every": max(1, min(100, steps))}
    out = copy.deepcopy(cfg)
    out["supernet"] = cfg["supernet"] | over
    return validate(out)


def arm_description(cfg: dict, name: str) -> dict:
    """What an arm trains with, for the ablation table: its switches and its recipe."""
    sn = variant_config(cfg, name)["supernet"]
    aug = sn["augment"]
    recipe = "DeiT" if VARIANTS[name].get("recipe") == "deit" else "weak"
    switches = {k: sn[k] for k in SWITCHES}
    if sn["sampling"] == "depth":  # a uniform depth: no identity probability is drawn with
        switches["identity_prob"] = "unused"
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
def _held_out(cfg: dict, data_dir):
    from .data import load_split

    return load_split(data_dir, "search", cfg["data"]["dataset"]).head(cfg["ablation"]["eval_images"])


def run_variant(cfg: dict, variant: str, data_dir, supernet_path, train_log=None, health_out=None,
                reference=None, ranking_out=None, search_out=None, ckpt_dir=None) -> dict:
    """One arm. With `train_log`: train its supernet (for the smallest budget) into
    `supernet_path` (and write the log and, if given, `health_out`); otherwise load
    `supernet_path`. Then write whichever of `ranking_out` (needs `reference`, the reference
    stage's CSV) and `search_out` are given. Returns what was measured."""
    import numpy as np
    import pandas as pd

    from . import ranking, reference as ref
    from .engine import resolve_device, write_log
    from .io import read_json, write_json
    from .search import ScoreCache, best_of, evolve
    from .spaces import Sampler, sampling_record
    from .supernet.train import fit, load_supernet, save_supernet, scorer

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
    held_out = _held_out(cfg, data_dir)
    score = scorer(net, held_out, sn["eval_batch_size"], device)
    drawn = sampling_record(vcfg, space, budget)

    if health_out:
        # The same layer-wise draws at p = 0.5 for every arm, whatever it trained with.
        rng, common = random.Random(f"{cfg['seed']}-ablation-health"), replace(space, sampling="layerwise")
        randoms = [score(common.sample(rng, HEALTH_IDENTITY_PROB)) for _ in range(cfg["ablation"]["random_subnets"])]
        losses = pd.read_csv(train_log or Path(supernet_path).with_name("train_log.csv"))["loss"]
        usage = read_json(usage_path) if usage_path.is_file() else {}
        done["health"] = {
            "variant": variant, "arm": arm_description(cfg, variant), "supernet": {k: sn[k] for k in SWITCHES},
            "sampling_used": {k: drawn[k] for k in ("sampling", "identity_prob", "max_depth")},
            "augment": sn["augment"], "steps": sn["max_steps"], "budget": budget,
            "smallest": score(space.smallest()), "largest": score(space.largest()),
            "random_mean": float(np.mean(randoms)), "random_std": float(np.std(randoms)),
            "random_min": float(np.min(randoms)), "random_max": float(np.max(randoms)),
            "n_random": len(randoms), "random_identity_prob": HEALTH_IDENTITY_PROB,
            "loss_spikes": count_spikes(losses), "loss_nans": count_nans(losses),
            "spike_factor": SPIKE_FACTOR, "log_rows": len(losses), "final_loss": float(losses.iloc[-1]),
            "held_out_images": len(held_out), "usage": usage,
        }
        write_json(health_out, done["health"])

    if ranking_out:
        table = ref.load(reference)
        measured = ranking.measure(score, table, budget, cfg["reference"]["bootstrap"], cfg["seed"])
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
