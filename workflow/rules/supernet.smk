# One supernet per budget (sampled for that budget's window), or one shared by every budget; each
# with its health (usage and untrained-layer warnings included) and its ranking quality against
# the stand-alone reference.
rule train_supernet:
    input:
        train=rules.prepare_data.output.train,
        search=rules.prepare_data.output.search,
    output:
        weights=f"{S}/supernet/{{supernet}}/supernet.safetensors",
        train_log=f"{S}/supernet/{{supernet}}/train_log.csv",
        health=f"{S}/supernet/{{supernet}}/health.json",
    params:
        cfg=stage_config("train_supernet"),
        budget=lambda wildcards: "" if wildcards.supernet == "shared" else f"--budget {wildcards.supernet}",
        checkpoints=f"{CKPT}/{{space}}/supernet",
    priority: 10  # on the critical path: schedule before retrain/transfer of baselines
    resources:
        gpu=0,  # set per cluster in slurm/config.yaml
    threads: config["supernet"]["threads"]
    log:
        f"{P}/logs/seed{{seed}}/train_supernet_{{supernet}}.log",
    benchmark:
        f"{P}/benchmarks/seed{{seed}}/train_supernet_{{supernet}}.tsv"
    conda:
        ENV
    shell:
        "launch {resources.gpu} train-supernet --seed {wildcards.seed} {params.budget} --config {params.cfg:q}"
        " --data $(dirname {input.train}) --weights {output.weights} --train-log {output.train_log}"
        " --health {output.health} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"


rule ranking:
    input:
        search=rules.prepare_data.output.search,
        supernet=rules.train_supernet.output.weights,
        reference=f"{P}/reference/standalone.csv",
    output:
        f"{S}/supernet/{{supernet}}/ranking.json",
    params:
        cfg=stage_config("ranking"),
        budget=lambda wildcards: "" if wildcards.supernet == "shared" else f"--budget {wildcards.supernet}",
    threads: config["search"]["threads"]
    log:
        f"{P}/logs/seed{{seed}}/ranking_{{supernet}}.log",
    benchmark:
        f"{P}/benchmarks/seed{{seed}}/ranking_{{supernet}}.tsv"
    conda:
        ENV
    shell:
        "vitnas ranking --seed {wildcards.seed} {params.budget} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet} --reference {input.reference}"
        " --out {output} --threads {threads} > {log} 2>&1"
