"""Ranking against the known answer (issue 18 §3): a macro-family supernet trained on CIFAR-10,
its inherited-weight ranking of NAS-Bench-Macro's networks against the benchmark's accuracies
(with the seed-to-seed ceiling and the FLOPs baseline), the regret of searches on its scores, and
the ablation arms compared on tau (vitnas.known_answer; results go into benchmarks/README.md).

    python benchmarks/known_answer.py --configfile config/nasbench_macro.yaml [--configfile more.yaml]
        [--out DIR] [--threads 1]

The config files are merged over config/config.yaml in order. The data is prepared into
results/<experiment>/data (as the pipeline's data stage) unless it is there already; each arm's
supernet (its checkpoint and weights) and scores are kept under checkpoints/<experiment>/macro/
known_answer/<config hash>/<arm>/, so a rerun with more networks or seeds reuses them. The same
study runs in the pipeline as rule known_answer (`snakemake known_answer --configfile
config/nasbench_macro.yaml`), with its claims in the space's claims table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = "macro"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", action="append", default=[], metavar="YAML",
                    help="config merged over config/config.yaml (repeatable; config/nasbench_macro.yaml first)")
    ap.add_argument("--out", type=Path, help="output folder (default results/<experiment>/macro/known_answer)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    args = ap.parse_args(argv)

    from vitnas import config, data, known_answer
    from vitnas import results as results_layout
    from vitnas.errors import ConfigError, DataError, SpaceError

    try:
        cfg = config.load(str(ROOT / "config" / "config.yaml"), *args.configfile)
        if SPACE not in config.active_spaces(cfg):
            raise ConfigError(f"spaces: no {SPACE} space; pass --configfile config/nasbench_macro.yaml")
        cfg = config.for_space(cfg, SPACE)
        results = Path("results") / cfg["experiment"]
        data_dir, out = results / "data", args.out or results / SPACE / "known_answer"
        t0 = time.time()
        if not (data_dir / "manifest.csv").is_file():
            data.prepare(cfg, data_dir)
        result = known_answer.run(cfg, data_dir, out,
                                  Path(results_layout.checkpoint_dir(cfg["experiment"], SPACE, "known_answer")),
                                  args.threads)
    except (ConfigError, DataError, SpaceError) as e:
        sys.exit(f"known_answer: {e}")
    full = result["arms"][next(iter(result["arms"]))]["ranking"]["all"]
    print(f"{result['networks']} networks: tau supernet {full['supernet']['kendall_tau']:.3f}, FLOPs "
          f"{full['flops']['kendall_tau']:.3f}, ceiling {full['ceiling']['kendall_tau']:.3f}; "
          f"{time.time() - t0:.0f} s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
