"""Data parallelism: 2 processes (gloo, CPU) end with the weights of 1 process, same global batch.

The comparison runs in float64. Two processes sum the gradient in another order than one, and
AdamW divides each gradient by sqrt(v) + eps: for a weight whose true gradient is zero (the key
bias of attention is one: softmax ignores a constant added to every key's score) the rounding
noise itself becomes an update of up to lr per step. In float32 that noise (~1e-7 of the gradient
scale, divided by eps = 1e-8) reaches 1e-5 of the weights and depends on the CPU's summation
order. In float64 the same bound is ~1e-16 x 16 images x 1e5 x lr x 6 steps < 1e-11, so a 1e-9
tolerance holds on any CPU with a margin of 100x, while a rank whose gradient is dropped or
doubled moves weights by ~1e-4: the faulty runs below must fail the same comparison.
"""
import os
import random

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from vitnas import config, distributed
from vitnas.batches import TrainBatches, step_seed
from vitnas.data import STATS, Split
from vitnas.engine import train
from vitnas.families import build_space
from vitnas.families.vit.supernet import ViTSupernet

STEPS, BATCH = 6, 16
TOLERANCE = 1e-9  # float64: see the module docstring


def run_supernet(rank: int, world: int, ckpt_dir: str, out: str, port: int, fault: str | None = None) -> None:
    """Train a small supernet in float64 for a few steps as rank `rank` of `world`; rank 0 saves the
    weights. `fault` breaks rank 1 on purpose: "drop" zeroes its gradient, "double" doubles it."""
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cfg = config.validate({"supernet": {
        "batch_size": BATCH, "max_steps": STEPS, "warmup_steps": 1, "checkpoint_every": 100,
        "log_every": 2, "augment": {"cutmix": 0.0, "mixup": 0.0}}})  # CutMix pairs within a rank
    ctx = distributed.setup(torch.device("cpu"))
    space = build_space(cfg)
    torch.manual_seed(0)
    net = ViTSupernet(space).double()  # not set_default_dtype: spawned data workers would not inherit it
    if fault is not None and rank == 1:
        scale = {"drop": 0.0, "double": 2.0}[fault]
        for p in net.parameters():  # runs before DDP's reducer sees the gradient
            p.register_hook(lambda g, s=scale: g * s)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 64)
    batches = TrainBatches(Split(images, labels, *STATS["fashion_mnist"]), BATCH, cfg["supernet"]["augment"], 28, 10, seed=1,
                           rank=ctx.rank, world=ctx.world, workers=2)  # each rank's batches from 2 workers
    forward = lambda m, x, step: m(x.to(torch.float64), space.sample(random.Random(step_seed(1, step)), 0.5))
    log = train(net, forward, batches, cfg["supernet"], ckpt_dir, "ddp", ctx,
                find_unused_parameters=True)
    if ctx.main:
        torch.save({"state": net.state_dict(), "log": log}, out)
    distributed.teardown(ctx)


def worst_difference(a: dict, b: dict) -> tuple[float, str]:
    """The largest |a - b| over every weight, and the tensor it is in."""
    return max((float((a[k] - b[k]).abs().max()), k) for k in a)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    d = tmp_path_factory.mktemp("one")
    run_supernet(0, 1, str(d / "ckpt"), str(d / "one.pt"), 0)
    return torch.load(d / "one.pt")


def two_processes(tmp_path, fault=None):
    port = 29500 + (os.getpid() + hash(fault)) % 1000
    mp.spawn(run_supernet, args=(2, str(tmp_path / "two"), str(tmp_path / "two.pt"), port, fault), nprocs=2)
    return torch.load(tmp_path / "two.pt")


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, one_process):
    two = two_processes(tmp_path)
    worst, where = worst_difference(one_process["state"], two["state"])
    assert worst < TOLERANCE, f"{where} differs by {worst:.3g}"
    torch.manual_seed(0)
    initial = ViTSupernet(build_space(config.validate({}))).state_dict()
    assert not torch.allclose(one_process["state"]["head.weight"].float(), initial["head.weight"])  # it did train
    # The logged loss is the mean over ranks: the same as one process's over the global batch.
    for a, b in zip(one_process["log"], two["log"]):
        assert a["step"] == b["step"] and a["loss"] == pytest.approx(b["loss"], rel=TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["drop", "double"])
def test_a_broken_rank_fails_the_comparison(tmp_path, one_process, fault):
    """The tolerance is strict enough to catch a real DDP mistake."""
    worst, _ = worst_difference(one_process["state"], two_processes(tmp_path, fault)["state"])
    assert worst > 1000 * TOLERANCE
