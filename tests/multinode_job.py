"""A tiny supernet training run in float64 (see tests/test_distributed.py for why float64), as one
process or as every rank of a torchrun job; what tests/test_multinode.py starts on the local SLURM
in place of `vitnas.cli` (the launcher's srun and torchrun options are kept as they are).

    python tests/multinode_job.py CKPT_DIR OUT [--steps N] [--pause S]

Rank 0 writes the final weights to OUT; checkpoints go to CKPT_DIR/last.pt and a rerun resumes
from there. `--pause` sleeps S seconds per step (after the step's arithmetic, so the weights do not
depend on it) to give a test time to cancel the job mid-run.
"""
import argparse
import random
import time

import numpy as np
import torch

from vitnas import config, distributed
from vitnas.batches import TrainBatches, step_seed
from vitnas.data import STATS, Split
from vitnas.engine import train
from vitnas.families import build_space
from vitnas.families.vit.supernet import ViTSupernet

BATCH = 16  # global batch: split over the ranks, whatever their layout


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("ckpt_dir")
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--pause", type=float, default=0.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = config.validate({"supernet": {
        "batch_size": BATCH, "max_steps": args.steps, "warmup_steps": 1, "checkpoint_every": 2,
        "log_every": 2, "augment": {"cutmix": 0.0, "mixup": 0.0}}})  # CutMix pairs within a rank
    ctx = distributed.setup(torch.device("cpu"))  # gloo under torchrun, nothing otherwise
    space = build_space(cfg)
    torch.manual_seed(0)
    net = ViTSupernet(space).double()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 64)
    batches = TrainBatches(Split(images, labels, *STATS["fashion_mnist"]), BATCH, cfg["supernet"]["augment"],
                           28, 10, seed=1, rank=ctx.rank, world=ctx.world)

    def forward(model, x, step):
        out = model(x.to(torch.float64), space.sample(random.Random(step_seed(1, step)), 0.5))
        time.sleep(args.pause)
        return out

    log = train(net, forward, batches, cfg["supernet"], args.ckpt_dir, "multinode", ctx,
                find_unused_parameters=True)
    if ctx.main:
        torch.save({"state": net.state_dict(), "log": log, "world": ctx.world}, args.out)
    distributed.teardown(ctx)


if __name__ == "__main__":
    main()
