"""Measured speed of the pieces the pipeline leans on (results go into benchmarks/README.md).

    python benchmarks/speed.py [--threads 1] [--steps 20]

1. A sampled sub-network's training step in the supernet vs the stand-alone exported model of the
   same architecture (same batch, same optimizer): the cost of weight sharing by slicing.
2. Analytic MACs counting: architectures per second (constraint loops need >= 10,000/s).
3. The augmented batch stream: images per second, one process (timm transforms per image; and the
   whole-batch crop-and-flip path of the embedded recipe).
"""
import argparse
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from vitnas import config
from vitnas.batches import TrainBatches
from vitnas.data import STATS, Split
from vitnas.families import build_space
from vitnas.families.vit.supernet import ViTSupernet, export


def step_time(model, forward, x, y, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters())
    for i in range(steps + 3):
        if i == 3:
            t0 = time.perf_counter()
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--archs", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config.validate({})
    space = build_space(cfg)
    rng = random.Random(0)
    x, y = torch.randn(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}")
    print("arch                      MACs(M)  supernet ms  stand-alone ms  ratio")
    for i in range(args.archs):
        arch = space.largest() if i == 0 else space.sample(rng)
        net = ViTSupernet(space)
        t_super = step_time(net, lambda x: net(x, arch), x, y, args.steps)
        model = export(net, arch)
        t_alone = step_time(model, model, x, y, args.steps)
        name = f"p{arch.patch} e{arch.embed} d{arch.depth}"
        print(f"{name:24s} {space.macs(arch) / 1e6:8.2f} {1e3 * t_super:12.1f} {1e3 * t_alone:15.1f}"
              f"  {t_super / t_alone:5.2f}")
    archs = [space.sample(rng) for _ in range(20000)]
    t0 = time.perf_counter()
    for a in archs:
        space.macs(a)
    print(f"analytic MACs: {len(archs) / (time.perf_counter() - t0):,.0f} architectures/s")
    images = np.random.default_rng(0).integers(0, 255, (2048, 28, 28), dtype=np.uint8)
    split = Split(images, np.zeros(2048, dtype=np.int64), *STATS["fashion_mnist"])
    embedded = config.load("config/config.yaml")["supernet"]["augment"]
    for name, augment in (("ViTAS weak recipe (per image, PIL)", cfg["supernet"]["augment"]),
                          ("embedded crop + flip (whole batch)", embedded)):
        batches = TrainBatches(split, args.batch, augment, 28, 10, 0)
        t0 = time.perf_counter()
        for s in range(8):
            batches.get(s)
        print(f"augmented batch stream, {name}: {8 * args.batch / (time.perf_counter() - t0):,.0f} images/s")


if __name__ == "__main__":
    main()
