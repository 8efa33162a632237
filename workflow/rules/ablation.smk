# The ablation study of each space's family (src/vitnas/ablation.py; arms defined by the family
# package, read through vitnas.variants): per arm a small supernet for the smallest budget, its
# health, its ranking quality against the space's stand-alone reference (shared with the main
# supernets) and a small search under the smallest budget. The default seed only: replicates
# repeat the main chain.
wildcard_constraints:
    variant="|".join(sorted({v for arms in ARMS.values() for v in arms})),


rule ablation_supernet:
    input:
        train=rules.prepare_data.output.train,
        search=rules.prepare_data.output.search,
    output:
        weights=results.ablation_weights(R, "{space}", "{variant}"),
        train_log=results.ablation_train_log(R, "{space}", "{variant}"),
        health=results.ablation_health(R, "{space}", "{variant}"),
    params:
        cfg=stage_config("ablation"),
        checkpoints=checkpoints("ablation"),
    priority: 1  # before the short ranking and search jobs, which fill the end
    threads: config["ablation"]["threads"]
    log:
        results.log(R, "ablation_supernet_{variant}", "{space}"),
    benchmark:
        results.benchmark(R, "ablation_supernet_{variant}", "{space}")
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
        results.ablation_ranking(R, "{space}", "{variant}"),
    params:
        cfg=stage_config("ablation"),
    threads: config["ablation"]["threads"]
    log:
        results.log(R, "ablation_ranking_{variant}", "{space}"),
    benchmark:
        results.benchmark(R, "ablation_ranking_{variant}", "{space}")
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
        results.ablation_search(R, "{space}", "{variant}"),
    params:
        cfg=stage_config("ablation"),
    threads: config["ablation"]["threads"]
    log:
        results.log(R, "ablation_search_{variant}", "{space}"),
    benchmark:
        results.benchmark(R, "ablation_search_{variant}", "{space}")
    conda:
        ENV
    shell:
        "vitnas ablation-variant --variant {wildcards.variant} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet}"
        " --search {output} --threads {threads} > {log} 2>&1"


rule ablation:  # `snakemake ablation`: the whole study, even with ablation.enabled false
    input:
        ABLATION_TARGETS,
