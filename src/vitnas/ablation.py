"""The ViTAS ablation study: one small supernet per variant (the full method, then each technique
switched off in turn, then plain AutoFormer-style training), each measured the same way.

`VARIANTS` is the one definition of the study: a variant is a dict of overrides of the `supernet`
config section. The Snakemake rules, the CLI and the report all read it (and `ablation.variants`
picks which of them run). Per variant:

- health: held-out top-1 of the smallest, the largest and `random_subnets` random sub-networks
  (drawn with identity probability 0.5 from one seeded stream, so every variant is judged on the
  same networks), plus training-loss stability from the training log (spikes and NaNs);
- ranking: Kendall tau and Spearman rho between the inherited-weight held-out top-1 of `n_archs`
  architectures and their stand-alone held-out top-1 after a short retrain. The architectures
  are stratified over MACs between the smallest and the largest search budget and do not depend on
  the supernet: they are retrained once (`run_standalone`) and every variant reads that table;
- search: a small evolutionary search under the smallest budget (`vitnas.search.evolve`).

Every score is on the held-out `search` split, never `test`. Torch is imported only where needed,
so the Snakefile can read `VARIANTS` cheaply.
"""
from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from .arch import Arch
from .config import ConfigError, validate
from .spaces import ViTSpace, build_space, format_macs, parse_macs

DEIT_RECIPE = "deit"  # a `recipe` override: train the supernet with the full DeiT recipe

# The full ViTAS method: private tokens per patch size, private Q/K per head count, cyclic channel
# sharing, identity shifting and the budget-driven identity probability; weak augmentation is
# `supernet.augment` as configured. Then each technique off in turn, in the order ViTAS adds them.
FULL = {"private_tokens": True, "private_qk": True, "sharing": "cyclic", "identity_shifting": True,
        "identity_prob": "budget"}
VARIANTS: dict[str, dict] = {
    "full": FULL,
    "no_private_tokens": FULL | {"private_tokens": False},
    "no_private_qk": FULL | {"private_qk": False},
    "no_cyclic": FULL | {"sharing": "prefix"},
    "no_shifting": FULL | {"identity_shifting": False},
    "no_budget_prob": FULL | {"identity_prob": 0.5},
    "no_weak_aug": FULL | {"recipe": DEIT_RECIPE},
    "autoformer": {"private_tokens": False, "private_qk": False, "sharing": "prefix",
                   "identity_shifting": False, "identity_prob": 0.5},
}
SWITCHES = tuple(FULL)  # the supernet keys the variants set, as recorded in health.json
SPIKE_FACTOR = 1.5  # a logged loss above 1.5 x the running median of the previous rows is a spike
HEALTH_IDENTITY_PROB = 0.5  # random sub-networks of the health check: one distribution for all
LOG_ROWS = 50  # training-log rows per variant supernet (finer than the default log_every)


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


def deit_recipe() -> dict:
    """The full DeiT-style recipe ViTAS retrains with (RandAugment, colour jitter, random erasing,
    label smoothing, drop-path 0.1): the schema's `retrain` defaults, whatever `retrain` is set to
    (the embedded default retrains with a lighter recipe, which would not test anything)."""
    rt = validate({})["retrain"]
    return {"augment": rt["augment"], "drop_path": rt["drop_path"]}


def variant_config(cfg: dict, name: str) -> dict:
    """The whole config of variant `name`: `supernet` with the variant's overrides, trained for
    `ablation.supernet_steps` steps with `ablation.threads` threads; validated."""
    check_variant(name)
    ab = cfg["ablation"]
    over = copy.deepcopy(VARIANTS[name])
    if over.pop("recipe", None) == DEIT_RECIPE:
        over |= deit_recipe()
    steps = ab["supernet_steps"]
    over |= {"max_steps": steps, "threads": ab["threads"],
             "log_every": max(1, steps // LOG_ROWS), "checkpoint_every": max(1, min(100, steps))}
    out = copy.deepcopy(cfg)
    out["supernet"] = cfg["supernet"] | over
    return validate(out)


def search_config(cfg: dict) -> dict:
    """`search` with the ablation's small evolution settings merged over it."""
    return cfg["search"] | cfg["ablation"]["search"]


def budget_range(cfg: dict, space: ViTSpace) -> tuple[float, float]:
    """MACs between the smallest and the largest search budget (with one budget: from the
    space's smallest network up to it)."""
    budgets = [parse_macs(b) for b in cfg["search"]["budgets"]]
    lo, hi = min(budgets), max(budgets)
    if lo == hi:
        lo = space.macs_range()[0]
    return lo, hi


def ranking_archs(cfg: dict) -> list[Arch]:
    """`ablation.n_archs` architectures, one per equal-width MACs stratum of `budget_range`,
    seeded by `seed`. Kept in raw form (identities where drawn): each variant's supernet maps an
    architecture to its own canonical form, and the stand-alone ViT only sees its blocks."""
    raw_cfg = copy.deepcopy(cfg)
    raw_cfg["supernet"] = cfg["supernet"] | {"identity_shifting": False}
    space = build_space(raw_cfg)
    lo, hi = budget_range(cfg, space)
    n = cfg["ablation"]["n_archs"]
    rng = random.Random(f"{cfg['seed']}-ablation-ranking")
    edges = [lo + (hi - lo) * i / n for i in range(n + 1)]
    return [space.sample_within(rng, a, b, HEALTH_IDENTITY_PROB) for a, b in zip(edges, edges[1:])]


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


def rank_correlations(x, y) -> dict:
    """Kendall tau (tau-b) and Spearman rho between two equally long sequences."""
    import pandas as pd

    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"rank correlation needs two sequences of equal length >= 2 (got {len(x)}, {len(y)})")
    try:
        from scipy import stats
    except ImportError:
        df = pd.DataFrame({"x": list(map(float, x)), "y": list(map(float, y))})
        tau, rho = (df.corr(method=m).loc["x", "y"] for m in ("kendall", "spearman"))
    else:
        tau, rho = stats.kendalltau(x, y).statistic, stats.spearmanr(x, y).statistic
    return {"kendall_tau": float(tau), "spearman_rho": float(rho)}  # NaN when one side is constant


# ------------------------------------------------------------------------------ stages
def _held_out(cfg: dict, data_dir):
    from .data import load_split

    return load_split(data_dir, "search", cfg["data"]["dataset"]).head(cfg["ablation"]["eval_images"])


def run_standalone(cfg: dict, data_dir, out_csv, ckpt_dir) -> "pd.DataFrame":
    """Retrain each of `ranking_archs` for `ablation.retrain_steps` steps with the retrain recipe,
    score it on the held-out split, and write one row per architecture."""
    import pandas as pd
    import torch

    from . import distributed
    from .batches import TrainBatches
    from .data import load_split
    from .engine import evaluate, resolve_device, train
    from .io import atomic_path
    from .models.vit import ViT

    ab = cfg["ablation"]
    rt = cfg["retrain"] | {"max_steps": ab["retrain_steps"],
                           "log_every": max(1, ab["retrain_steps"] // 10),
                           "checkpoint_every": max(1, min(100, ab["retrain_steps"]))}
    ctx = distributed.setup(resolve_device(cfg["device"]))
    space = build_space(cfg)
    train_split = load_split(data_dir, "train", cfg["data"]["dataset"])
    held_out = _held_out(cfg, data_dir)
    rows = []
    for i, arch in enumerate(ranking_archs(cfg)):
        torch.manual_seed(cfg["seed"])
        model = ViT(arch, space.img_size, space.in_chans, space.num_classes, drop_path=rt["drop_path"])
        batches = TrainBatches(train_split, rt["batch_size"], rt["augment"], space.img_size,
                               space.num_classes, cfg["seed"])
        log = train(model, lambda m, x, step: m(x), batches, rt, Path(ckpt_dir) / f"arch-{i}",
                    f"stand-alone {i + 1}/{ab['n_archs']}", ctx)
        model.eval()
        acc = evaluate(model, held_out, space.img_size, rt["eval_batch_size"], ctx.device)
        rows.append({"index": i, "arch": json.dumps(arch.to_dict(), separators=(",", ":")),
                     "macs": space.macs(arch), "params": space.params(arch), "depth": arch.depth,
                     "standalone_accuracy": acc, "final_loss": log[-1]["loss"] if log else float("nan"),
                     "steps": ab["retrain_steps"], "held_out_images": len(held_out)})
        print(f"[ablation] stand-alone {i + 1}/{ab['n_archs']}: {format_macs(space.macs(arch))} MACs, "
              f"held-out top-1 {acc:.2f}", flush=True)
    df = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    return df


def run_variant(cfg: dict, variant: str, data_dir, supernet_path, train_log=None, health_out=None,
                standalone=None, ranking_out=None, search_out=None, ckpt_dir=None) -> dict:
    """One variant. With `train_log`: train its supernet into `supernet_path` (and write the log
    and, if given, `health_out`); otherwise load `supernet_path`. Then write whichever of
    `ranking_out` (needs `standalone`) and `search_out` are given. Returns what was measured."""
    import numpy as np
    import pandas as pd

    from .engine import evaluate, resolve_device
    from .io import write_json
    from .search import ScoreCache, best_of, evolve
    from .spaces import resolve_identity_prob
    from .supernet.train import fit, load_supernet, save_log, save_supernet

    vcfg = variant_config(cfg, variant)
    sn, done = vcfg["supernet"], {}
    device = resolve_device(cfg["device"])
    if train_log:
        if ckpt_dir is None:
            raise ValueError("training a variant supernet needs a checkpoint folder")
        # The supernet stage's own training (same sampler, same identity-probability logic); the
        # health check is the ablation's, below.
        from . import distributed

        net, log = fit(vcfg, data_dir, ckpt_dir, distributed.setup(device))
        save_supernet(net, supernet_path)
        save_log(log, train_log)
        net.eval()
    else:
        net = load_supernet(vcfg, supernet_path, device)
    space = net.space
    held_out = _held_out(cfg, data_dir)
    score = lambda arch: evaluate(lambda x: net(x, space.canonical(arch)), held_out, space.img_size,
                                  sn["eval_batch_size"], device)
    identity_prob = resolve_identity_prob(vcfg, space)

    if health_out:
        rng = random.Random(f"{cfg['seed']}-ablation-health")
        randoms = [score(space.sample(rng, HEALTH_IDENTITY_PROB))
                   for _ in range(cfg["ablation"]["random_subnets"])]
        losses = pd.read_csv(train_log or Path(supernet_path).with_name("train_log.csv"))["loss"]
        done["health"] = {
            "variant": variant, "supernet": {k: sn[k] for k in SWITCHES},
            "identity_prob_used": identity_prob, "augment": sn["augment"], "steps": sn["max_steps"],
            "smallest": score(space.smallest()), "largest": score(space.largest()),
            "random_mean": float(np.mean(randoms)), "random_std": float(np.std(randoms)),
            "random_min": float(np.min(randoms)), "random_max": float(np.max(randoms)),
            "n_random": len(randoms), "random_identity_prob": HEALTH_IDENTITY_PROB,
            "loss_spikes": count_spikes(losses), "loss_nans": count_nans(losses),
            "spike_factor": SPIKE_FACTOR, "log_rows": len(losses), "final_loss": float(losses.iloc[-1]),
            "held_out_images": len(held_out),
        }
        write_json(health_out, done["health"])

    if ranking_out:
        table = pd.read_csv(standalone)
        inherited = [score(Arch.from_json(a)) for a in table["arch"]]
        corr = rank_correlations(inherited, table["standalone_accuracy"].tolist())
        done["ranking"] = {"variant": variant, **corr, "n_archs": len(table),
                           "held_out_images": len(held_out),
                           "archs": [{"index": int(r["index"]), "macs": int(r["macs"]),
                                      "inherited_accuracy": acc,
                                      "standalone_accuracy": float(r["standalone_accuracy"])}
                                     for acc, (_, r) in zip(inherited, table.iterrows())]}
        write_json(ranking_out, done["ranking"])

    if search_out:
        sc = search_config(cfg) | {"eval_images": cfg["ablation"]["eval_images"]}
        budget = min(cfg["search"]["budgets"], key=parse_macs)
        history = evolve(space, ScoreCache(score, space), budget, parse_macs(budget), sc, cfg["seed"],
                         identity_prob)
        best = best_of(history)
        done["search"] = {"variant": variant, "budget": budget, "budget_macs": parse_macs(budget),
                          "accuracy": best["accuracy"], "macs": best["macs"], "params": best["params"],
                          "arch": json.loads(best["arch"]), "evaluations": len(history),
                          "identity_prob_used": identity_prob, "held_out_images": len(held_out)}
        write_json(search_out, done["search"])
    return done
