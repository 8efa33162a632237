"""The latency predictor's error (issue 19 §4; results in benchmarks/README.md, "Latency predictor").

    python benchmarks/latency_predictor.py [--config config/config.yaml] [--space vit] [--networks 24]
                                           [--threads 1] [--repeats 30] [--warmup 5] [--seed 0]
                                           [--chain 4] [--stat median|min] [--out latency_predictor.csv]
    python benchmarks/latency_predictor.py --space twins
    python benchmarks/latency_predictor.py --config config/nasbench_macro.yaml --space macro

1. The space's per-block latency table on this device (vitnas.latency_table, built in a temporary
   folder unless --table is given): every stem (the network without blocks) and block shape, timed
   as real timm modules at batch 1.
2. `--networks` networks spread over the space's MACs range: 4,000 random draws (identity
   probability uniform in [0, 1], so every depth occurs), sorted by MACs, and the draws at evenly
   spaced quantiles taken.
3. Each network's stand-alone model (eval, no grad, the same threads) timed end to end at batch 1,
   twice (a and b, the whole list between the two), against the table's prediction. Relative error
   = |predicted - measured| / measured, measured = the mean of a and b; the two measurements'
   relative difference is the noise floor the predictor cannot beat. For comparison: the same
   table with every block timed alone (--chain 1: what a plain lookup table does), and latency
   from MACs alone (a line through the other networks' measurements, leave-one-out).

Every timing keeps the fastest of its repeats, the one other jobs on the machine disturbed least
(search.latency.statistic's default; --stat median: the median), for the table and the
measurement alike.
"""
import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from vitnas import config, families, latency, latency_table as lt

REPO = Path(__file__).resolve().parents[1]


def networks(space, n: int, seed: int, draws: int = 4000) -> list:
    """`n` distinct networks at evenly spaced MACs quantiles of random draws."""
    rng = random.Random(seed)
    pool = {}
    for _ in range(draws):
        arch = space.sample(rng, rng.random())
        pool.setdefault(space.key(arch), arch)
    ranked = sorted(pool.values(), key=space.macs)
    picks = [ranked[round(i * (len(ranked) - 1) / (n - 1))] for i in range(n)]
    return list({space.key(a): a for a in picks}.values())


def loo_macs_fit(macs: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Each network's latency from a least-squares line latency = a + b MACs over the others."""
    out = np.empty_like(measured)
    for i in range(len(macs)):
        keep = np.arange(len(macs)) != i
        b, a = np.polyfit(macs[keep], measured[keep], 1)
        out[i] = a + b * macs[i]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--space", default="vit", help="a space of the config (its family needs latency blocks)")
    parser.add_argument("--networks", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stat", choices=["median", "min"], default="min",
                        help="what each timing keeps of its repeats, for the table and the measurement alike")
    parser.add_argument("--chain", type=int, default=lt.CHAIN, help="copies of a block timed in a chain (1: alone)")
    parser.add_argument("--table", default=None, help="the table's folder (default: a temporary one)")
    parser.add_argument("--out", default=None, help="per-network CSV")
    args = parser.parse_args()

    with open(args.config) as f:
        cfg = config.for_space(config.validate(yaml.safe_load(f)), args.space)
    space = families.build_space(cfg)
    family = families.get(space.family)
    time_fn = lt.timer(args.warmup, args.repeats, args.stat)
    folder = args.table or tempfile.mkdtemp(prefix="latency-table-")
    t0 = time.perf_counter()
    table, timed = lt.space_table(space, lambda key: f"{folder}/{key}/table.json", "cpu", args.threads, time_fn,
                                  args.chain, args.stat)
    build_s = time.perf_counter() - t0
    alone, _ = lt.space_table(space, lambda key: f"{folder}/{key}/table.json", "cpu", args.threads, time_fn, 1, args.stat)
    archs = networks(space, args.networks, args.seed)
    torch.manual_seed(args.seed)
    models = [family.build_model(a, space) for a in archs]
    time_all = lambda: [lt.measured_seconds(m, space, "cpu", args.threads, time_fn) for m in models]
    a, b = time_all(), time_all()
    df = pd.DataFrame({
        "macs": [space.macs(x) for x in archs], "depth": [x.depth for x in archs],
        "patch": [x.patch for x in archs], "embed": ["/".join(str(st.embed) for st in x.stages) for x in archs],
        "predicted_ms": [1e3 * table.seconds(space.latency_blocks(x)) for x in archs],
        "measured_a_ms": [1e3 * s for s in a], "measured_b_ms": [1e3 * s for s in b]})
    df["measured_ms"] = (df.measured_a_ms + df.measured_b_ms) / 2
    df["alone_ms"] = [1e3 * alone.seconds(space.latency_blocks(x)) for x in archs]
    df["alone_rel_error"] = (df.alone_ms - df.measured_ms).abs() / df.measured_ms
    df["rel_error"] = (df.predicted_ms - df.measured_ms).abs() / df.measured_ms
    df["signed_error"] = (df.predicted_ms - df.measured_ms) / df.measured_ms
    df["noise"] = (df.measured_a_ms - df.measured_b_ms).abs() / df.measured_ms
    df["macs_fit_ms"] = loo_macs_fit(df.macs.to_numpy(float), df.measured_ms.to_numpy())
    df["macs_rel_error"] = (df.macs_fit_ms - df.measured_ms).abs() / df.measured_ms
    if args.out:
        df.to_csv(args.out, index=False)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"space {args.space} ({space.family}), {len(df)} networks, {df.macs.min() / 1e6:.3f}-{df.macs.max() / 1e6:.3f} "
          f"M MACs, measured {df.measured_ms.min():.3f}-{df.measured_ms.max():.3f} ms; table: {len(table.entries)} "
          f"parts ({timed} timed, {build_s:.1f} s, blocks in chains of {args.chain}); {args.threads} thread(s), warm-up {args.warmup}, "
          f"{args.stat} of {args.repeats}; CPU {latency.cpu_name()}; torch {torch.__version__}; load average {' '.join(load)}")
    for name, col in (("table (sum of parts)", "rel_error"), ("table, blocks timed alone", "alone_rel_error"),
                      ("MACs line (leave-one-out)", "macs_rel_error"),
                      ("noise: a vs b", "noise")):
        print(f"{name}: median {100 * df[col].median():.1f} %, worst {100 * df[col].max():.1f} %")
    print(f"table's signed error: median {100 * statistics.median(df.signed_error):+.1f} %")
    print(df[["macs", "depth", "patch", "embed", "predicted_ms", "measured_ms", "rel_error", "noise"]]
          .round(4).to_string(index=False))


if __name__ == "__main__":
    main()
