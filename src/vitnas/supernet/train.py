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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .. import distributed
from ..batches import step_seed, train_batches
from ..config import ConfigError
from ..data import load_split
from ..engine import resolve_device, train, write_log
from ..loader import EvalImages, accuracy, held_out_images
from ..io import atomic_path, write_json
from .. import families
from ..families import build_space
from ..spaces import Sampler, Space, format_macs, sampler, sampling_record, window


def build_supernet(cfg: dict) -> torch.nn.Module:
    torch.manual_seed(cfg["seed"])  # initial weights from the configured seed
    return families.build_supernet(cfg, build_space(cfg))


def save_supernet(net: torch.nn.Module, path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "vitnas-supernet"})


def load_supernet(cfg: dict, path, device="cpu") -> torch.nn.Module:
    net = build_supernet(cfg)
    net.load_state_dict(load_file(str(path), device=str(device)))
    return net.to(device).eval()


MIN_LAYER_ACTIVITY = 0.01  # a usable layer trained in fewer steps than this is reported


def step_archs(cfg: dict, draw: Sampler, step: int, rank: int = 0, steps_per_epoch: int = 1) -> list:
    """The sub-networks of training step `step` on process `rank`: a function of (seed, step, rank)
    only, so a resumed run draws what an uninterrupted one drew and usage can be replayed exactly.

    One per step (`archs_per_batch` 1): the same on every rank. k per step (ViT-ResNAS's
    multi-architectural sampling): each rank draws its own k, as ViT-ResNAS does, each alone or
    dealt balanced (`multi_arch_draw`, the space's `sample_many`). During progressive unlocking
    (`warmup_epochs`) only the unlocked choices are drawn: unlocked at the step's fractional epoch,
    or once per epoch at its start (`unlock_per_epoch`, as released: set_epoch)."""
    sn = cfg["supernet"]
    k, warmup = sn["archs_per_batch"], sn["warmup_epochs"]
    if warmup:
        epoch = step // steps_per_epoch if sn["unlock_per_epoch"] else step / steps_per_epoch
        draw = replace(draw, space=draw.space.unlocked(epoch, warmup))
    if k == 1:
        return [draw(random.Random(step_seed(cfg["seed"], step)))]
    return draw.many([random.Random(step_seed(cfg["seed"], step, 1 + rank * k + j)) for j in range(k)])


def replay_archs(cfg: dict, draw: Sampler, steps: int, world: int = 1, steps_per_epoch: int = 1) -> list:
    """Every sub-network every process trained over `steps` steps."""
    ranks = range(world) if cfg["supernet"]["archs_per_batch"] > 1 else range(1)
    return [a for step in range(steps) for rank in ranks for a in step_archs(cfg, draw, step, rank, steps_per_epoch)]


def usage_report(cfg: dict, space: Space, archs: list, budget: str | None) -> dict:
    """Per-layer activity and width-choice use over the trained sub-networks, with a warning for
    every layer that an in-window network can use but that was active in < 1 % of them."""
    usage = space.usage(archs)
    warnings = []
    for name in [budget] if budget else cfg["search"]["budgets"]:
        lo, hi = window(cfg, name)
        usable = space.usable_layers(lo, hi)
        for i in usable:
            share = usage["layer_active"][i]
            if share < MIN_LAYER_ACTIVITY:
                warnings.append(f"layer {usage['layers'][i]} was active in {100 * share:.2f} % of {len(archs)} "
                                f"sub-networks trained, but networks in the {name} window [{format_macs(lo)}, "
                                f"{format_macs(hi)}] use it ({len(usable)} usable layers): its weights are nearly "
                                "untrained (supernet.sampling: depth, or a lower supernet.identity_prob, trains it)")
    return usage | {"min_layer_activity": MIN_LAYER_ACTIVITY, "warnings": warnings}


def log_usage(usage: dict, desc: str) -> None:
    layers = " ".join(f"{slot}:{100 * a:.1f}%" for slot, a in zip(usage["layers"], usage["layer_active"]))
    print(f"[{desc}] layer activity over {usage['steps']} sub-networks: {layers}", file=sys.stderr)
    for dim, shares in usage["choices"].items():
        print(f"[{desc}] {dim} choices: " + " ".join(f"{v}:{100 * f:.1f}%" for v, f in shares.items()),
              file=sys.stderr)
    for warning in usage["warnings"]:
        print(f"[{desc}] WARNING: {warning}", file=sys.stderr)


def scorer(net: torch.nn.Module, held_out: EvalImages, batch_size: int, device):
    """`score(arch)`: held-out top-1 of a sub-network with inherited weights, in eval mode, on the
    held-out images decoded once (`loader.held_out_images`); any encoding is mapped to the
    supernet's canonical form first. The one scorer of the supernet health check, the search, the
    ranking and the ablation."""
    net.eval()
    return lambda arch: accuracy(lambda x: net(x, net.space.canonical(arch)), held_out, batch_size, device)


def health(score, space: Space, randoms: list, held_out_images: int) -> dict:
    """The one health check (supernet stage and ablation): held-out top-1 (`score`) of the
    space's smallest and largest sub-networks and of the random sub-networks `randoms`."""
    accs = [score(arch) for arch in randoms]
    return {"smallest": score(space.smallest()), "largest": score(space.largest()),
            "random_mean": float(np.mean(accs)), "random_std": float(np.std(accs)),
            "random_min": float(np.min(accs)), "random_max": float(np.max(accs)),
            "n_random": len(accs), "held_out_images": held_out_images}


def fit(cfg: dict, data_dir, ckpt_dir, ctx: distributed.Context, budget: str | None = None,
        sampling_out=None) -> tuple[torch.nn.Module, list[dict], dict]:
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
    # The stream first: a batch size the split cannot fill stops before anything is written.
    batches = train_batches(cfg, "supernet", load_split(data_dir, "train", cfg["data"]["dataset"]), space, ctx,
                            net.patch_grid)  # a patch head (supernet.patch_mixup) trains on patch-level mixup
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
    k, spe = sn["archs_per_batch"], batches.steps_per_epoch
    if (sn["batch_size"] // ctx.world) % k:
        raise ConfigError(f"supernet.batch_size: {sn['batch_size']} images over {ctx.world} process(es) do not "
                          f"split into archs_per_batch = {k} equal sub-batches; make the per-process batch a "
                          f"multiple of {k}")

    def forward(model, x, step):
        archs = step_archs(cfg, draw, step, ctx.rank, spe)
        return model(x, archs if k > 1 else archs[0])

    def epoch_start(model, optimizer, epoch):
        model.on_epoch_start(epoch, optimizer, sn["warmup_epochs"])  # the family's hook (re-sorting)

    log = train(net, forward, batches, sn, ckpt_dir, desc, ctx, find_unused_parameters=True,
                on_epoch_start=epoch_start)
    steps = log[-1]["step"] if log else 0
    usage = usage_report(cfg, space, replay_archs(cfg, draw, steps, ctx.world, spe), budget)
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
    held_out = held_out_images(cfg, data_dir, cfg["supernet"]["eval_images"], net.space.img_size, ctx.device)
    warnings = usage.pop("warnings")
    # Random sub-networks drawn as in training (after unlocking), from their own seeded stream.
    draw, rng = sampler(cfg, net.space, budget), random.Random(f"{cfg['seed']}-health")
    randoms = [draw(rng) for _ in range(cfg["supernet"]["health_random"])]
    score = scorer(net, held_out, cfg["supernet"]["eval_batch_size"], ctx.device)
    report = ({"budget": budget or "shared"} | health(score, net.space, randoms, len(held_out))
              | {"usage": usage, "warnings": warnings})
    save_supernet(net, weights_out)
    write_log(log, log_out)
    write_json(health_out, report)
    return report
