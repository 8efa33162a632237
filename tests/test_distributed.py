"""Data parallelism: 2 processes (gloo, CPU) end with the weights of 1 process, same global batch."""
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


def run_supernet(rank: int, world: int, ckpt_dir: str, out: str, port: int) -> None:
    """Train a small supernet for a few steps as rank `rank` of `world`; rank 0 saves the weights."""
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
    net = ViTSupernet(space)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 64)
    batches = TrainBatches(Split(images, labels, *STATS["fashion_mnist"]), BATCH, cfg["supernet"]["augment"], 28, 10, seed=1,
                           rank=ctx.rank, world=ctx.world, workers=2)  # each rank's batches from 2 workers
    forward = lambda m, x, step: m(x, space.sample(random.Random(step_seed(1, step)), 0.5))
    log = train(net, forward, batches, cfg["supernet"], ckpt_dir, "ddp", ctx,
                find_unused_parameters=True)
    if ctx.main:
        torch.save({"state": net.state_dict(), "log": log}, out)
    distributed.teardown(ctx)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    run_supernet(0, 1, str(tmp_path / "one"), str(tmp_path / "one.pt"), 0)
    port = 29500 + os.getpid() % 1000
    mp.spawn(run_supernet, args=(2, str(tmp_path / "two"), str(tmp_path / "two.pt"), port), nprocs=2)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    torch.manual_seed(0)
    initial = ViTSupernet(build_space(config.validate({}))).state_dict()
    for k, v in one["state"].items():
        torch.testing.assert_close(two["state"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.equal(one["state"]["head.weight"], initial["head.weight"])  # it did train
    # The logged loss is the mean over ranks: the same as one process's over the global batch.
    for a, b in zip(one["log"], two["log"]):
        assert a["step"] == b["step"] and a["loss"] == pytest.approx(b["loss"], rel=1e-4)
