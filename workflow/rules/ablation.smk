# The ViTAS ablation study (src/vitnas/ablation.py): per arm a small supernet for the smallest
# budget, its health, its ranking quality against the stand-alone reference (shared with the main
# supernets) and a small search under the smallest budget. Arms are defined once, in
# vitnas.ablation.VARIANTS. The default seed only: replicates repeat the main chain.
from vitnas.ablation import VARIANTS, selected_variants

try:
    ABLATION = selected_variants(config)  # what `ablation.variants` picks (all by default)
except ConfigError as e:
    sys.exit(f"vitnas: {e}")
ABLATION_ON = config["ablation"]["enabled"]  # whether `all` and `figures` need the study
ABLATION_TARGETS = expand(
    f"{R}/ablation/{{variant}}/{{kind}}.json",
    variant=ABLATION,
    kind=["health", "ranking", "search"],
)
ABLATION_OUTPUTS = ABLATION_TARGETS if ABLATION_ON else []


wildcard_constraints:
    variant="|".join(VARIANTS),


rule ablation_supernet:
    input:
        train=rules.prepare_data.output.train,
        search=rules.prepare_data.output.search,
    output:
        weights=f"{R}/ablation/{{variant}}/supernet.safetensors",
        train_log=f"{R}/ablation/{{variant}}/train_log.csv",
        health=f"{R}/ablation/{{variant}}/health.json",
    params:
        cfg=stage_config("search", "retrain", "reference", "ablation"),
        checkpoints=f"{CKPT}/ablation",
    priority: 1  # before the short ranking and search jobs, which fill the end
    threads: config["ablation"]["threads"]
    log:
        f"{R}/logs/ablation_supernet_{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/ablation_supernet_{{variant}}.tsv"
    conda:
        ENV
    shell:
        "vitnas ablation-variant --variant {wildcards.variant} --config {params.cfg:q}"
        " --data $(dirname {input.train}) --supernet {output.weights} --train-log {output.train_log}"
        " --health {output.health} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"


rule ablation_ranking:
    input:
        search=rules.prepare_data.output.search,
        supernet=rules.ablation_supernet.output.weights,
        reference=rules.reference.output,
    output:
        f"{R}/ablation/{{variant}}/ranking.json",
    params:
        cfg=stage_config("search", "retrain", "reference", "ablation"),
    threads: config["ablation"]["threads"]
    log:
        f"{R}/logs/ablation_ranking_{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/ablation_ranking_{{variant}}.tsv"
    conda:
        ENV
    shell:
        "vitnas ablation-variant --variant {wildcards.variant} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet}"
        " --reference {input.reference} --ranking {output} --threads {threads} > {log} 2>&1"


rule ablation_search:
    input:
        search=rules.prepare_data.output.search,
        supernet=rules.ablation_supernet.output.weights,
    output:
        f"{R}/ablation/{{variant}}/search.json",
    params:
        cfg=stage_config("search", "retrain", "reference", "ablation"),
    threads: config["ablation"]["threads"]
    log:
        f"{R}/logs/ablation_search_{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/ablation_search_{{variant}}.tsv"
    conda:
        ENV
    shell:
        "vitnas ablation-variant --variant {wildcards.variant} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet}"
        " --search {output} --threads {threads} > {log} 2>&1"


rule ablation:  # `snakemake ablation`: the whole study, even with ablation.enabled false
    input:
        ABLATION_TARGETS,
