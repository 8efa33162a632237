# vitnas: weight-sharing architecture search for Vision Transformers, end to end.
#   snakemake --cores all                                   embedded Fashion-MNIST default
#   snakemake --profile slurm --configfile config/X.yaml    on a SLURM cluster
from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/supernet.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/latency.smk"
include: "workflow/rules/retrain.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/known_answer.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/replicates.smk"
include: "workflow/rules/search_quality.smk"


rule all:
    default_target: True
    input:
        expand(results.table(R, "claims", "html", "{space}"), space=SPACES),
        rules.families.output,
        rules.published.output,
        rules.search_quality.output,  # NAS-Bench-Macro: seconds at the default size
        [f for space in SPACES for f in ablation_outputs(space)],  # empty unless ablation.enabled
        [getattr(rules, f"pareto_figure_{space}").output for space in PARETO_SPACES],  # search.mode: pareto
