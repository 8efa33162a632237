# One supernet per budget (sampled for that budget's window), or one shared by every budget; each
# with its health (usage and untrained-layer warnings included) and its ranking quality against
# the stand-alone reference.
rule train_supernet:
    input:
        train=rules.prepare_data.output.train,
        search=rules.prepare_data.output.search,
    output:
        weights=results.supernet_weights(R, "{space}", "{seed}", "{supernet}"),
        train_log=results.supernet_train_log(R, "{space}", "{seed}", "{supernet}"),
        health=results.supernet_health(R, "{space}", "{seed}", "{supernet}"),
    params:
        cfg=stage_config("train_supernet"),
        budget=lambda wildcards: "" if wildcards.supernet == "shared" else f"--budget {wildcards.supernet}",
        checkpoints=checkpoints("supernet"),
    priority: 10  # on the critical path: schedule before retrain/transfer of baselines
    resources:
        gpu=0,  # set per cluster in slurm/config.yaml
        nodes=1,  # more than one: data parallelism over nodes (slurm/config.yaml)
    threads: config["supernet"]["threads"]
    log:
        results.log(R, "train_supernet_{supernet}", "{space}", "{seed}"),
    benchmark:
        results.benchmark(R, "train_supernet_{supernet}", "{space}", "{seed}")
    conda:
        ENV
    shell:
        "launch {resources.gpu} {resources.nodes} train-supernet --seed {wildcards.seed} {params.budget} --config {params.cfg:q}"
        " --data $(dirname {input.train}) --weights {output.weights} --train-log {output.train_log}"
        " --health {output.health} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"


rule ranking:
    input:
        search=rules.prepare_data.output.search,
        supernet=rules.train_supernet.output.weights,
        reference=rules.reference.output[0],
    output:
        results.supernet_ranking(R, "{space}", "{seed}", "{supernet}"),
    params:
        cfg=stage_config("ranking"),
        budget=lambda wildcards: "" if wildcards.supernet == "shared" else f"--budget {wildcards.supernet}",
    threads: config["search"]["threads"]
    log:
        results.log(R, "ranking_{supernet}", "{space}", "{seed}"),
    benchmark:
        results.benchmark(R, "ranking_{supernet}", "{space}", "{seed}")
    conda:
        ENV
    shell:
        "vitnas ranking --seed {wildcards.seed} {params.budget} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet} --reference {input.reference}"
        " --out {output} --threads {threads} > {log} 2>&1"
