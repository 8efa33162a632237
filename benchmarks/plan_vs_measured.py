"""`vitnas plan`'s estimate for the embedded default against the default run's measured job times
(results go into benchmarks/README.md, "Planned vs measured").

    python benchmarks/plan_vs_measured.py [--results results/default] [--steps 15] [--gflops N]

1. The CPU's throughput: training steps (AdamW, batch 128, one thread, as the default run's jobs)
   of each family's hand-designed baseline at its default budget; FLOPs per step = 2 x 3 x MACs x
   batch; GFLOP/s over the process's CPU time, so that other jobs on the machine do not count. The
   plan uses the `vit` baseline's rate (`--gflops` skips the measurement).
2. The plan of config/config.yaml at that rate, job by job, against the Snakemake benchmark file of
   each job (`<space>/benchmarks/...tsv`): its CPU seconds (`cpu_time`; the jobs run one thread) and
   its wall seconds (`s`, which a loaded machine inflates). A rule whose files are missing is named.
"""
import argparse
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from vitnas import config, families
from vitnas.plan import FLOPS_PER_MAC, TRAIN_PASSES, plan

REPO = Path(__file__).resolve().parents[1]


def cpu_gflops(scfg: dict, batch: int, steps: int) -> tuple[float, float]:
    """(GFLOP/s over CPU time, MACs) of training the space's baseline at its first budget."""
    space = families.build_space(scfg)
    arch = families.design_baseline(scfg, space, scfg["search"]["budgets"][0])
    torch.manual_seed(0)
    model = families.build_model(arch, space)
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(batch, space.in_chans, space.img_size, space.img_size)
    y = torch.randint(0, space.num_classes, (batch,))
    for i in range(steps + 3):
        if i == 3:  # after warm-up
            t0 = time.process_time()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = (time.process_time() - t0) / steps
    macs = space.macs(arch)
    return FLOPS_PER_MAC * TRAIN_PASSES * macs * batch / seconds / 1e9, macs


def benchmark_file(results: Path, job) -> Path | None:
    """The Snakemake `benchmark:` file of a job (workflow/rules/*.smk), or None for rules without one."""
    if job.rule in ("prepare_data", "compose_detection", "design_baseline"):
        return None
    if job.rule == "reference_seed":
        return results / job.space / "benchmarks" / f"reference_seed{job.wildcard}.tsv"
    seed = "" if job.seed is None else f"seed{job.seed}/"
    return results / job.space / "benchmarks" / f"{seed}{job.rule}_{job.wildcard}.tsv"


def compare(planned, results: Path, rate: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per job and per rule: planned seconds at `rate`, measured CPU and wall seconds, the ratio."""
    rows = []
    for job in planned:
        path = benchmark_file(results, job)
        if path is None:
            continue
        row = {"rule": job.rule, "space": job.space, "job": job.wildcard,
               "planned_s": (job.train_flops + job.eval_flops) / rate, "cpu_s": None, "wall_s": None}
        if path.is_file():
            measured = pd.read_csv(path, sep="\t").iloc[0]
            row |= {"cpu_s": float(measured["cpu_time"]), "wall_s": float(measured["s"])}
        rows.append(row)
    jobs = pd.DataFrame(rows)
    per_rule = []
    for rule, sub in jobs.groupby("rule", sort=False):
        have = sub.dropna(subset=["cpu_s"])
        row = {"rule": rule, "jobs measured": f"{len(have)} of {len(sub)}"}
        if len(have):  # a rule whose files are all missing keeps empty cells
            row |= {"planned s": have["planned_s"].sum(), "measured CPU s": have["cpu_s"].sum(),
                    "planned / CPU": have["planned_s"].sum() / have["cpu_s"].sum(),
                    "per job": ", ".join(f"{r.space} {r.job}: {r.planned_s / r.cpu_s:.2f}" for r in have.itertuples()),
                    "measured wall s": have["wall_s"].sum()}
        per_rule.append(row)
    return jobs, pd.DataFrame(per_rule)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(REPO / "results/default"), help="the default run's results folder")
    p.add_argument("--steps", type=int, default=15, help="timed training steps per family (default: 15)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--gflops", type=float, help="the CPU's GFLOP/s (skips the measurement)")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = config.load(str(REPO / "config/config.yaml"))
    rate = args.gflops
    if rate is None:
        print(f"torch {torch.__version__}, 1 thread, batch {args.batch}, {args.steps} steps after 3")
        for name in config.active_spaces(cfg):
            gflops, macs = cpu_gflops(config.for_space(cfg, name), args.batch, args.steps)
            print(f"- {name} baseline ({macs / 1e6:.2f} M MACs): {gflops:.2f} GFLOP/s of CPU time")
            rate = gflops if name == "vit" else rate
    planned, _ = plan(cfg)
    jobs, rules = compare(planned, Path(args.results), rate * 1e9)
    print(f"\nplan at {rate:.2f} GFLOP/s against {args.results}:\n")
    print(rules.astype(object).where(rules.notna(), None).to_markdown(index=False, floatfmt=".2f",
                                                                      missingval="files missing"))
    print("\n" + jobs.to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
