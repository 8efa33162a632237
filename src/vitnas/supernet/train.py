"""The supernet stage: train the weight-sharing supernet, sampling one sub-network per step, then
report its health (held-out top-1 of the smallest, the largest and random sub-networks).

Besides the declared outputs it writes `identity_prob.json` beside health.json: the identity
probability the sub-networks were sampled with, and how it was found (ViTAS's budget-driven search
when `supernet.identity_prob` is "budget")."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from .. import distributed
from ..batches import TrainBatches, step_seed
from ..data import Split, load_split
from ..engine import evaluate, resolve_device, train
from ..io import atomic_path, write_json
from ..spaces import build_space, format_macs, identity_prob_record, resolve_identity_prob
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


def health(net: ViTSupernet, held_out: Split, cfg: dict, device) -> dict:
    """Held-out top-1 of the smallest, the largest and `health_random` random sub-networks."""
    space, sn = net.space, cfg["supernet"]
    net.eval()
    score = lambda arch: evaluate(lambda x: net(x, arch), held_out, space.img_size,
                                  sn["eval_batch_size"], device)
    rng, n_random = random.Random(f"{cfg['seed']}-health"), sn["health_random"]
    identity_prob = resolve_identity_prob(cfg, space)
    randoms = [score(space.sample(rng, identity_prob)) for _ in range(n_random)]
    return {"smallest": score(space.smallest()), "largest": score(space.largest()),
            "random_mean": float(np.mean(randoms)), "random_std": float(np.std(randoms)),
            "random_min": float(np.min(randoms)), "random_max": float(np.max(randoms)),
            "n_random": n_random, "held_out_images": len(held_out)}


def fit(cfg: dict, data_dir, ckpt_dir, ctx: distributed.Context,
        identity_prob_out=None) -> tuple[ViTSupernet, list[dict]]:
    """Train the supernet, one sampled sub-network per step; returns it and its training log.

    The identity probability is resolved first (ViTAS's budget-driven search when
    `supernet.identity_prob` is "budget"), logged on stderr and, if given, written to
    `identity_prob_out` by the main rank."""
    sn = cfg["supernet"]
    net = build_supernet(cfg)
    space = net.space
    found = identity_prob_record(cfg, space)  # every rank finds the same p (a seeded search)
    identity_prob = found["identity_prob"]
    if ctx.main:
        how = (f"mean {format_macs(found['mean_macs'])} MACs of random sub-networks within "
               f"[0.9 C, C] for the smallest budget C = {found['budget']}"
               if found["source"] == "budget" else "from the config")
        print(f"[supernet] identity probability {identity_prob:.2f} ({how})", file=sys.stderr)
        if identity_prob_out:
            write_json(identity_prob_out, found)
    train_split = load_split(data_dir, "train", cfg["data"]["dataset"])
    batches = TrainBatches(train_split, sn["batch_size"], sn["augment"], space.img_size,
                           space.num_classes, cfg["seed"], ctx.rank, ctx.world)

    def forward(model, x, step):
        # The step's sub-network: a function of (seed, step), identical on every rank.
        arch = space.sample(random.Random(step_seed(cfg["seed"], step)), identity_prob)
        return model(x, arch)

    log = train(net, forward, batches, sn, ckpt_dir, "supernet", ctx, find_unused_parameters=True)
    return net, log


def save_log(log: list[dict], path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(log).to_csv(tmp, index=False)


def run(cfg: dict, data_dir, weights_out, log_out, health_out, ckpt_dir) -> dict | None:
    """The stage; under torchrun every rank trains, rank 0 checks health and writes (others: None)."""
    ctx = distributed.setup(resolve_device(cfg["device"]))
    net, log = fit(cfg, data_dir, ckpt_dir, ctx, Path(health_out).with_name("identity_prob.json"))
    distributed.teardown(ctx)
    if not ctx.main:
        return None
    held_out = load_split(data_dir, "search", cfg["data"]["dataset"]).head(cfg["supernet"]["health_images"])
    report = health(net, held_out, cfg, ctx.device)
    save_supernet(net, weights_out)
    save_log(log, log_out)
    write_json(health_out, report)
    return report
