"""Multi-architectural sampling, measured (results go into benchmarks/README.md).

    python benchmarks/multi_arch.py [--space resnas] [--batch 64] [--steps 10] [--threads 1]

For archs_per_batch k = 1, 2, 4 and 8 at the same batch, on a space of the embedded default (or a
family's schema-default space, `--space twins`):
1. one k-architecture step (k sub-batches of B/k, one forward-backward pass, one optimizer step)
   against the mean of the k architectures' single-architecture steps on the whole batch B (target:
   <= 1.1x: B images through k networks cost what B images through their average network cost),
   and against the sum of the k single steps on their own sub-batches (what k steps of 1
   architecture would cost for the same images); sub-networks trained per second;
2. each sampled sub-network's supernet step against the stand-alone (exported) model of the same
   architecture, same batch (target: <= 1.05x): the cost of weight sharing by slicing; the two
   models' steps alternate, so that load from other processes hits both alike.
Architectures are drawn from the seeded sampler; timings are medians over --steps steps.
"""
import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from vitnas import config, families
from vitnas.families import build_space


def median_step(model, forward, x, y, steps: int) -> float:
    """Median seconds of one AdamW step of `forward(x)` (3 warm-up steps first)."""
    opt = torch.optim.AdamW(model.parameters())
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def median_steps_paired(a, b, x, y, steps: int) -> tuple[float, float]:
    """Median seconds of one AdamW step of each of two (model, forward) pairs, their steps taken
    in turn (3 warm-up steps each first), so that a change in the machine's load hits both alike."""
    runs = []
    for model, forward in (a, b):
        opt = torch.optim.AdamW(model.parameters())

        def step(model=model, forward=forward, opt=opt):
            t0 = time.perf_counter()
            loss = F.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return time.perf_counter() - t0
        runs.append(step)
    times = ([], [])
    for i in range(steps + 3):
        for run, out in zip(runs, times):
            t = run()
            if i >= 3:
                out.append(t)
    return statistics.median(times[0]), statistics.median(times[1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="resnas", help="space of config/config.yaml, or a family's name for its "
                   "schema-default space (e.g. twins) (default: resnas)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ks", default="1,2,4,8")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    raw = config.read("config/config.yaml")
    if args.space not in raw["spaces"] and args.space in families.names():  # not in the default run (yet)
        raw["spaces"][args.space] = {"family": args.space}
    cfg = config.for_space(config.validate(raw), args.space)
    space = build_space(cfg)
    torch.manual_seed(0)
    net = families.build_supernet(cfg, space).train()
    rng = random.Random(0)
    x = torch.randn(args.batch, space.in_chans, space.img_size, space.img_size)
    y = torch.randint(0, space.num_classes, (args.batch,))
    print(f"torch {torch.__version__}, {args.threads} thread(s), space {args.space}, batch {args.batch}")
    print(" k  k-arch step ms  mean single ms (B)  ratio  sum of sub-batch steps ms  ratio  subnets/s")
    for k in map(int, args.ks.split(",")):
        archs = [space.sample(rng, 0.5) for _ in range(k)]
        multi = median_step(net, lambda x: net(x, archs), x, y, args.steps)
        whole = statistics.mean(median_step(net, lambda x, a=a: net(x, a), x, y, args.steps) for a in archs)
        parts = list(zip(x.chunk(k), y.chunk(k), archs))
        summed = sum(median_step(net, lambda xi, a=a: net(xi, a), xi, yi, args.steps) for xi, yi, a in parts)
        print(f"{k:2d} {1e3 * multi:14.1f} {1e3 * whole:18.1f}  {multi / whole:5.2f} {1e3 * summed:25.1f}"
              f"  {multi / summed:5.2f} {k / multi:10.1f}")
    print("supernet step vs stand-alone model of the same architecture (whole batch):")
    print("MACs(M)  supernet ms  stand-alone ms  ratio")
    for i in range(5):
        arch = space.largest() if i == 0 else space.sample(rng, 0.5)
        model = families.export(net, arch).train()
        t_super, t_alone = median_steps_paired((net, lambda x: net(x, arch)), (model, model), x, y, args.steps)
        print(f"{space.macs(arch) / 1e6:7.2f} {1e3 * t_super:12.1f} {1e3 * t_alone:15.1f}  {t_super / t_alone:5.2f}")


if __name__ == "__main__":
    main()
