rule design_baseline:
    output:
        f"{P}/baselines/deit-{{budget}}.json",
    params:
        cfg=stage_config("design_baseline"),
    log:
        f"{P}/logs/design_baseline_{{budget}}.log",
    conda:
        ENV
    shell:
        "vitnas design-baseline --budget {wildcards.budget} --config {params.cfg:q} --out {output} > {log} 2>&1"


rule retrain:
    input:
        arch=arch_of,
        train=rules.prepare_data.output.train,
        test=rules.prepare_data.output.test,
    output:
        weights=f"{S}/retrain/{{model}}/model.safetensors",
        metrics=f"{S}/retrain/{{model}}/metrics.json",
        train_log=f"{S}/retrain/{{model}}/train_log.csv",
    params:
        cfg=stage_config("retrain"),
        checkpoints=f"{CKPT}/{{space}}/retrain",
    priority: 2  # long jobs before the ablation's, so no long job is left for the end
    resources:
        gpu=0,  # set per cluster in slurm/config.yaml
    threads: config["retrain"]["threads"]
    log:
        f"{P}/logs/seed{{seed}}/retrain_{{model}}.log",
    benchmark:
        f"{P}/benchmarks/seed{{seed}}/retrain_{{model}}.tsv"
    conda:
        ENV
    shell:
        "launch {resources.gpu} retrain --seed {wildcards.seed} --model {wildcards.model} --arch {input.arch} --config {params.cfg:q}"
        " --data $(dirname {input.train}) --weights {output.weights} --metrics {output.metrics}"
        " --train-log {output.train_log} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"
