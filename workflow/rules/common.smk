# Shared by every rule: the validated config, where results go (every path from vitnas.results),
# how a stage gets its config.
import json
import os
import sys

import vitnas.checks
import vitnas.config
import vitnas.published
import vitnas.results as results
from vitnas.data import check_source
from vitnas.errors import DataError, VitnasError
from vitnas.variants import selected_variants

# Validate before anything runs: one line naming the problem and the fix, no traceback
# (sys.exit: Snakemake prints a raised WorkflowError with a stack line).
try:
    config.update(vitnas.config.validate(config))
    SPACES = vitnas.config.active_spaces(config)  # the search spaces, side by side
    SCFG = {name: vitnas.config.for_space(config, name) for name in SPACES}  # each one's config
    vitnas.checks.check_experiment(config)
    vitnas.checks.check_workflow(config)  # what `vitnas <stage>` runs but the rules do not yet
    ARMS = {name: selected_variants(SCFG[name]) for name in SPACES}  # ablation arms per space
    # The published numbers (rule published; check_experiment has checked published.match against them).
    PUBLISHED = str(vitnas.published.references_path(config, workflow.basedir))
    R = results.experiment_dir(config["experiment"])  # declared outputs
    # Batches that cannot fit the training split: from the prepared split or the raw data, when
    # either is here (a dry run needs no data).
    vitnas.checks.check_data(config, results.data_dir(R))
except VitnasError as e:
    sys.exit(f"vitnas: {e}")


onstart:
    # A real run (not a dry run) stops at once, with the fix, when the raw data is missing and
    # not yet prepared.
    try:
        if not os.path.exists(results.data_manifest(R)):
            check_source(config)
    except DataError as e:
        sys.exit(f"vitnas: {e}")

ENV = "../envs/vitnas.yaml"
SEED = config["seed"]  # the default run's seed; `replicates` adds seed+1, seed+2, ...
SEEDS = [SEED + k for k in range(config["replicates"])]


def checkpoints(stage):
    """A stage's resumable progress (outside results/, never a declared output), per space."""
    return results.checkpoint_dir(config["experiment"], "{space}", stage)


def budgets(space):
    return SCFG[space]["search"]["budgets"]


def latency_budgets(space):
    """The MACs budgets whose pick rule latency_vs_macs compares with a latency search."""
    return SCFG[space]["search"]["latency_vs_macs"]


def supernets(space):
    """One supernet per budget (ViTAS), or one shared by every budget (supernet.per_budget: false)."""
    return budgets(space) if SCFG[space]["supernet"]["per_budget"] else ["shared"]


def models(space, replicates=False):
    """The retrained models; the replicates target's include retrain.compare_finetune's ft models."""
    return vitnas.config.model_names(SCFG[space], replicates)


wildcard_constraints:
    space="|".join(SPACES),
    budget=r"[0-9.]+[KMG]",
    model=r"(evo|ft|deit)-[0-9.]+[KMG]",
    seed=r"[0-9]+",
    refseed=r"[0-9]+",
    supernet=r"[0-9.]+[KMG]|shared",


def supernet_of(wildcards):
    """The supernet a search under `budget` reads: its own, or the shared one."""
    name = wildcards.budget if SCFG[wildcards.space]["supernet"]["per_budget"] else "shared"
    return results.supernet_weights(R, wildcards.space, wildcards.seed, name)


def chain_outputs(seed, spaces=SPACES, replicates=False):
    """What one replicate of the chain produces in every space, for the tables (`replicates`: for
    the replicates target, ft models included)."""
    out = {}
    for space in spaces:
        for kind, files in results.chain_records(R, space, seed, budgets(space), supernets(space),
                                                 models(space, replicates), latency_budgets(space)).items():
            out.setdefault(kind, []).extend(files)
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
    return results.ablation_records(R, space, ARMS[space])


def ablation_outputs(space):
    """The study's outputs when `ablation.enabled` (in `all` and the figures), else nothing."""
    return ablation_targets(space) if SCFG[space]["ablation"]["enabled"] else []


ABLATION_TARGETS = [f for space in SPACES for f in ablation_targets(space)]


def arch_of(wildcards):
    """A model's architecture: the evolved one (evo, and ft fine-tuned from the export), or the
    hand-designed baseline of its budget."""
    kind, budget = wildcards.model.split("-", 1)
    if kind in ("evo", "ft"):
        return results.search_best(R, wildcards.space, wildcards.seed, budget)
    return results.baseline_arch(R, wildcards.space, budget)


def init_of(wildcards):
    """What a retrained model starts from: nothing (scratch), or the export's weights of its searched
    network (vitnas.config.fine_tuned: ft, and evo with retrain.init: inherited)."""
    if vitnas.config.fine_tuned(SCFG[wildcards.space], wildcards.model):
        budget = wildcards.model.split("-", 1)[1]
        return [results.export_weights(R, wildcards.space, wildcards.seed, budget)]
    return []


# GPU rules run `launch {resources.gpu} {resources.nodes} <stage> ...` (workflow/scripts/launch.sh):
# the `vitnas` CLI, the same CLI under torchrun with one process per GPU when the job has several,
# or, with `nodes` > 1 under SLURM, one torchrun per node started by srun (the SLURM profile sets
# `gpu` and `nodes`). A shell function rather than a param, so the GPU and node counts are no rerun
# trigger (braces doubled: Snakemake formats the prefix).
LAUNCH = os.path.join(workflow.basedir, "workflow", "scripts", "launch.sh")
shell.prefix(f'set -euo pipefail; launch() {{{{ bash "{LAUNCH}" "$@"; }}}}; ')


# The known-answer study (known_answer.space; rule known_answer in known_answer.smk).
KNOWN_SPACE = config["known_answer"]["space"]  # null: no study


def known_answer_outputs(space):
    """The study's claims, an input of `space`'s figures when the study runs on it."""
    return [results.known_answer_file(R, space, "claims.csv")] if space == KNOWN_SPACE else []
