# Shared by every rule: the validated config, where results go, how a stage gets its config.
import json
import os
import sys

import vitnas.config
from vitnas.config import ConfigError
from vitnas.data import DataError, check_source
from vitnas.spaces import SpaceError

# Validate before anything runs: one line naming the problem and the fix, no traceback
# (sys.exit: Snakemake prints a raised WorkflowError with a stack line).
try:
    config.update(vitnas.config.validate(config))
    vitnas.config.check_experiment(config)
    R = f"results/{config['experiment']}"  # declared outputs
    if not os.path.exists(f"{R}/data/manifest.csv"):  # raw data is needed until it is prepared
        check_source(config)
except (ConfigError, SpaceError, DataError) as e:
    sys.exit(f"vitnas: {e}")

CKPT = f"checkpoints/{config['experiment']}"  # resumable progress, never a declared output
ENV = "../envs/vitnas.yaml"
BUDGETS = config["search"]["budgets"]
MODELS = vitnas.config.model_names(config)
SEED = config["seed"]  # the default run's seed; `replicates` adds seed+1, seed+2, ...
SEEDS = [SEED + k for k in range(config["replicates"])]
# One supernet per budget (ViTAS), or one shared by every budget (supernet.per_budget: false).
SUPERNETS = BUDGETS if config["supernet"]["per_budget"] else ["shared"]
S = f"{R}/seed{{seed}}"  # one replicate's chain: supernet -> search -> retrain -> transfer


wildcard_constraints:
    budget=r"[0-9.]+[KMG]",
    model=r"(evo|deit)-[0-9.]+[KMG]",
    seed=r"[0-9]+",
    refseed=r"[0-9]+",
    supernet=r"[0-9.]+[KMG]|shared",


def supernet_of(wildcards):
    """The supernet a search under `budget` reads: its own, or the shared one."""
    name = wildcards.budget if config["supernet"]["per_budget"] else "shared"
    return f"{R}/seed{wildcards.seed}/supernet/{name}/supernet.safetensors"


def chain_outputs(seed):
    """What one replicate of the chain produces, for the tables."""
    return {
        "health": expand(f"{R}/seed{seed}/supernet/{{sn}}/health.json", sn=SUPERNETS),
        "ranking": expand(f"{R}/seed{seed}/supernet/{{sn}}/ranking.json", sn=SUPERNETS),
        "evolution": expand(f"{R}/seed{seed}/search/{{budget}}/history.csv", budget=BUDGETS),
        "random": expand(f"{R}/seed{seed}/search/{{budget}}/random_history.csv", budget=BUDGETS),
        "metrics": expand(f"{R}/seed{seed}/retrain/{{model}}/metrics.json", model=MODELS),
        "detection": expand(f"{R}/seed{seed}/transfer/{{model}}/coco_eval.json", model=MODELS),
    }


def stage_config(*sections):
    """The config sections a stage reads, as JSON for `vitnas --config`. Passed as a param, so
    editing one section reruns only the stages that read it (and what depends on them)."""
    keys = ("experiment", "seed", "device", "data", "space", "supernet") + sections
    return json.dumps({k: config[k] for k in dict.fromkeys(keys)}, sort_keys=True)


def arch_of(wildcards):
    """A model's architecture: the evolved one, or the DeiT-style baseline of its budget."""
    kind, budget = wildcards.model.split("-", 1)
    if kind == "evo":
        return f"{R}/seed{wildcards.seed}/search/{budget}/best.json"
    return f"{R}/baselines/deit-{budget}.json"


# GPU rules run `launch {resources.gpu} <stage> ...`: the `vitnas` CLI, or the same CLI under torchrun
# with one process per GPU when the job has several (the SLURM profile sets `gpu`; a GPU rule
# never uses `tasks`). A shell function rather than a param, so the GPU count is no rerun trigger
# (braces doubled: Snakemake formats the prefix). torchrun parses abbreviated options after the
# module too (`--log` would match its `--log-dir`): CLI flags must not prefix torchrun's.
shell.prefix(
    "set -euo pipefail; "
    'launch() {{ n="$1"; shift; if [ "$n" -gt 1 ]; then '
    'torchrun --standalone --nproc_per_node="$n" -m vitnas.cli "$@"; else vitnas "$@"; fi; }}; '
)
