# Shared by every rule: the validated config, where results go, how a stage gets its config.
import json
import os
import sys

import vitnas.checks
import vitnas.config
import vitnas.published
from vitnas.data import check_source
from vitnas.errors import ConfigError, DataError, SpaceError
from vitnas.variants import selected_variants

# Validate before anything runs: one line naming the problem and the fix, no traceback
# (sys.exit: Snakemake prints a raised WorkflowError with a stack line).
try:
    config.update(vitnas.config.validate(config))
    SPACES = vitnas.config.active_spaces(config)  # the search spaces, side by side
    SCFG = {name: vitnas.config.for_space(config, name) for name in SPACES}  # each one's config
    vitnas.checks.check_experiment(config)
    ARMS = {name: selected_variants(SCFG[name]) for name in SPACES}  # ablation arms per space
    # The published numbers (rule published; check_experiment has checked published.match against them).
    PUBLISHED = str(vitnas.published.references_path(config, workflow.basedir))
    R = f"results/{config['experiment']}"  # declared outputs
    # Batches that cannot fit the training split: from the prepared split or the raw data, when
    # either is here (a dry run needs no data).
    vitnas.checks.check_data(config, f"{R}/data")
except (ConfigError, SpaceError, DataError) as e:
    sys.exit(f"vitnas: {e}")


onstart:
    # A real run (not a dry run) stops at once, with the fix, when the raw data is missing and
    # not yet prepared.
    try:
        if not os.path.exists(f"{R}/data/manifest.csv"):
            check_source(config)
    except DataError as e:
        sys.exit(f"vitnas: {e}")

CKPT = f"checkpoints/{config['experiment']}"  # resumable progress, never a declared output
ENV = "../envs/vitnas.yaml"
SEED = config["seed"]  # the default run's seed; `replicates` adds seed+1, seed+2, ...
SEEDS = [SEED + k for k in range(config["replicates"])]
P = f"{R}/{{space}}"  # one space's results
S = f"{P}/seed{{seed}}"  # one replicate's chain: supernet -> search -> retrain -> transfer


def budgets(space):
    return SCFG[space]["search"]["budgets"]


def supernets(space):
    """One supernet per budget (ViTAS), or one shared by every budget (supernet.per_budget: false)."""
    return budgets(space) if SCFG[space]["supernet"]["per_budget"] else ["shared"]


def models(space):
    return vitnas.config.model_names(SCFG[space])


wildcard_constraints:
    space="|".join(SPACES),
    budget=r"[0-9.]+[KMG]",
    model=r"(evo|deit)-[0-9.]+[KMG]",
    seed=r"[0-9]+",
    refseed=r"[0-9]+",
    supernet=r"[0-9.]+[KMG]|shared",


def supernet_of(wildcards):
    """The supernet a search under `budget` reads: its own, or the shared one."""
    name = wildcards.budget if SCFG[wildcards.space]["supernet"]["per_budget"] else "shared"
    return f"{R}/{wildcards.space}/seed{wildcards.seed}/supernet/{name}/supernet.safetensors"


def chain_outputs(seed, spaces=SPACES):
    """What one replicate of the chain produces in every space, for the tables."""
    out = {k: [] for k in ("health", "ranking", "evolution", "random", "metrics", "detection")}
    for space in spaces:
        C = f"{R}/{space}/seed{seed}"
        out["health"] += [f"{C}/supernet/{sn}/health.json" for sn in supernets(space)]
        out["ranking"] += [f"{C}/supernet/{sn}/ranking.json" for sn in supernets(space)]
        out["evolution"] += [f"{C}/search/{b}/history.csv" for b in budgets(space)]
        out["random"] += [f"{C}/search/{b}/random_history.csv" for b in budgets(space)]
        out["metrics"] += [f"{C}/retrain/{m}/metrics.json" for m in models(space)]
        out["detection"] += [f"{C}/transfer/{m}/coco_eval.json" for m in models(space)]
    return out


def stage_config(stage):
    """The config sections `stage` reads (vitnas.config.STAGE_SECTIONS), for the wildcards' space,
    as JSON for `vitnas --config`. A param, so editing one section reruns only the stages that read
    it (and what depends on them)."""

    def of(wildcards):
        cfg = SCFG[wildcards.space] if hasattr(wildcards, "space") else config
        return json.dumps(vitnas.config.stage_config(cfg, stage), sort_keys=True)

    return of


def ablation_targets(space):
    return expand(f"{R}/{space}/ablation/{{variant}}/{{kind}}.json", variant=ARMS[space],
                  kind=["health", "ranking", "search"])


def ablation_outputs(space):
    """The study's outputs when `ablation.enabled` (in `all` and the figures), else nothing."""
    return ablation_targets(space) if SCFG[space]["ablation"]["enabled"] else []


ABLATION_TARGETS = [f for space in SPACES for f in ablation_targets(space)]


def arch_of(wildcards):
    """A model's architecture: the evolved one, or the hand-designed baseline of its budget."""
    kind, budget = wildcards.model.split("-", 1)
    if kind == "evo":
        return f"{R}/{wildcards.space}/seed{wildcards.seed}/search/{budget}/best.json"
    return f"{R}/{wildcards.space}/baselines/deit-{budget}.json"


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
