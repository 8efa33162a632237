"""The supernet stage: train the weight-sharing supernet of one budget (or the one shared by every
budget), sampling one sub-network per step, then report its health: held-out top-1 of the
smallest, the largest and random sub-networks, how often each layer and each width choice trained,
and a warning for every layer that a network in the budget's window can use but that trained in
under 1 % of the steps.

Besides the declared outputs it writes `identity_prob.json` beside health.json: how sub-networks
were sampled (the identity probability and how it was found, or the depth range)."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import distributed
from ..batches import TrainBatches, step_seed
from ..data import Split, load_split
from ..engine import evaluate, resolve_device, train, write_log
from ..io import atomic_path, write_json
from ..spaces import (Sampler, ViTSpace, build_space, format_macs, sampler, sampling_record,
                      supernet_budget, window)
from .vit import ViTSupernet


def build_supernet(cfg: dict) -> ViTSupernet:
    torch.manual_seed(cfg["seed"])  # initial weights from the configured seed
    sn = cfg["supernet"]
    return ViTSupernet(build_space(cfg), sharing=sn["sharing"], private_qk=sn["private_qk"],
                       drop_path=sn["drop_path"], private_tokens=sn["private_tokens"])


def save_supernet(net: ViTSupernet, path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "vitnas-supernet"})


def load_supernet(cfg: dict, path, device="cpu") -> ViTSupernet:
    net = build_supernet(cfg)
    net.load_state_dict(load_file(str(path), device=str(device)))
    return net.to(device).eval()


MIN_LAYER_ACTIVITY = 0.01  # a usable layer trained in fewer steps than this is reported


def step_archs(cfg: dict, draw: Sampler, steps: int) -> list:
    """The sub-network of every training step: a function of (seed, step), identical on every rank
    and across a resume, so usage can be replayed exactly without logging each step."""
    return [draw(random.Random(step_seed(cfg["seed"], step))) for step in range(steps)]


def usage_report(cfg: dict, space: ViTSpace, archs: list, budget: str | None) -> dict:
    """Per-layer activity and width-choice use over the training steps, with a warning for every
    layer that an in-window network can use but that was active in < 1 % of the steps."""
    usage = space.usage(archs)
    warnings = []
    for name in [budget] if budget else cfg["search"]["budgets"]:
        lo, hi = window(cfg, name)
        usable = space.usable_layers(lo, hi)
        for i in range(usable):
            share = usage["layer_active"][i]
            if share < MIN_LAYER_ACTIVITY:
                warnings.append(f"layer {i} was active in {100 * share:.2f} % of {len(archs)} steps, but networks "
                                f"in the {name} window [{format_macs(lo)}, {format_macs(hi)}] use up to {usable} "
                                "layers: its weights are nearly untrained (supernet.sampling: depth, or a "
                                "lower supernet.identity_prob, trains it)")
    return usage | {"min_layer_activity": MIN_LAYER_ACTIVITY, "warnings": warnings}


def log_usage(usage: dict, desc: str) -> None:
    layers = " ".join(f"{i}:{100 * a:.1f}%" for i, a in enumerate(usage["layer_active"]))
    print(f"[{desc}] layer activity over {usage['steps']} steps: {layers}", file=sys.stderr)
    for dim, shares in usage["choices"].items():
        print(f"[{desc}] {dim} choices: " + " ".join(f"{v}:{100 * f:.1f}%" for v, f in shares.items()),
              file=sys.stderr)
    for warning in usage["warnings"]:
        print(f"[{desc}] WARNING: {warning}", file=sys.stderr)


def scorer(net: ViTSupernet, held_out: Split, batch_size: int, device):
    """`score(arch)`: held-out top-1 of a sub-network with inherited weights, in eval mode; any
    encoding is mapped to the supernet's canonical form first. The one scorer of the supernet
    health check, the search, the ranking and the ablation."""
    net.eval()
    return lambda arch: evaluate(lambda x: net(x, net.space.canonical(arch)), held_out, net.space.img_size,
                                 batch_size, device)


def health(net: ViTSupernet, held_out: Split, cfg: dict, device, draw: Sampler) -> dict:
    """Held-out top-1 of the smallest, the largest and `health_random` sub-networks drawn as in
    training."""
    space, sn = net.space, cfg["supernet"]
    score = scorer(net, held_out, sn["eval_batch_size"], device)
    rng, n_random = random.Random(f"{cfg['seed']}-health"), sn["health_random"]
    randoms = [score(draw(rng)) for _ in range(n_random)]
    return {"smallest": score(space.smallest()), "largest": score(space.largest()),
            "random_mean": float(np.mean(randoms)), "random_std": float(np.std(randoms)),
            "random_min": float(np.min(randoms)), "random_max": float(np.max(randoms)),
            "n_random": n_random, "held_out_images": len(held_out)}


def fit(cfg: dict, data_dir, ckpt_dir, ctx: distributed.Context, budget: str | None = None,
        sampling_out=None) -> tuple[ViTSupernet, list[dict], dict]:
    """Train the supernet of `budget` (None: shared by every budget), one sampled sub-network per
    step; returns it, its training log and its usage report.

    How sub-networks are drawn is resolved first (ViTAS's budget-driven identity probability when
    `supernet.identity_prob` is "budget"), logged on stderr and, if given, written to
    `sampling_out` by the main rank."""
    sn = cfg["supernet"]
    net = build_supernet(cfg)
    space = net.space
    found = sampling_record(cfg, space, budget)  # every rank finds the same (a seeded search)
    draw = Sampler.from_record(space, found)
    desc = f"supernet {budget or 'shared'}"
    if ctx.main:
        if found["sampling"] == "depth":
            how = f"depth uniform in {found['depth_range']}, first layers"
        elif found["source"] == "budget":
            how = (f"identity probability {found['identity_prob']:.2f}: mean {format_macs(found['mean_macs'])} "
                   f"MACs of random sub-networks within [0.9 C, C] for C = {found['prob_budget']}")
        else:
            how = f"identity probability {found['identity_prob']:.2f} from the config"
        print(f"[{desc}] sampling: {how}", file=sys.stderr)
        if sampling_out:
            write_json(sampling_out, found)
    train_split = load_split(data_dir, "train", cfg["data"]["dataset"])
    batches = TrainBatches(train_split, sn["batch_size"], sn["augment"], space.img_size,
                           space.num_classes, cfg["seed"], ctx.rank, ctx.world)

    def forward(model, x, step):
        # The step's sub-network: a function of (seed, step), identical on every rank.
        return model(x, draw(random.Random(step_seed(cfg["seed"], step))))

    log = train(net, forward, batches, sn, ckpt_dir, desc, ctx, find_unused_parameters=True)
    usage = usage_report(cfg, space, step_archs(cfg, draw, log[-1]["step"] if log else 0), budget)
    if ctx.main:
        log_usage(usage, desc)
    return net, log, usage


def run(cfg: dict, data_dir, weights_out, log_out, health_out, ckpt_dir,
        budget: str | None = None) -> dict | None:
    """The stage for the supernet of `budget` (None: shared); under torchrun every rank trains,
    rank 0 checks health and writes (others: None)."""
    ctx = distributed.setup(resolve_device(cfg["device"]))
    net, log, usage = fit(cfg, data_dir, ckpt_dir, ctx, budget, Path(health_out).with_name("identity_prob.json"))
    distributed.teardown(ctx)
    if not ctx.main:
        return None
    held_out = load_split(data_dir, "search", cfg["data"]["dataset"]).head(cfg["supernet"]["health_images"])
    warnings = usage.pop("warnings")
    report = ({"budget": budget or "shared"} | health(net, held_out, cfg, ctx.device, sampler(cfg, net.space, budget))
              | {"usage": usage, "warnings": warnings})
    save_supernet(net, weights_out)
    write_log(log, log_out)
    write_json(health_out, report)
    return report
