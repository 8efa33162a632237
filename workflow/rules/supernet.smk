rule train_supernet:
    input:
        train=rules.prepare_data.output.train,
        search=rules.prepare_data.output.search,
    output:
        weights=f"{R}/supernet/supernet.safetensors",
        train_log=f"{R}/supernet/train_log.csv",
        health=f"{R}/supernet/health.json",
    params:
        cfg=stage_config(),
        checkpoints=f"{CKPT}/supernet",
    priority: 10  # on the critical path: schedule before retrain/transfer of baselines
    resources:
        gpu=0,  # set per cluster in slurm/config.yaml
    threads: config["supernet"]["threads"]
    log:
        f"{R}/logs/train_supernet.log",
    benchmark:
        f"{R}/benchmarks/train_supernet.tsv"
    conda:
        ENV
    shell:
        "launch {resources.gpu} train-supernet --config {params.cfg:q} --data $(dirname {input.train})"
        " --weights {output.weights} --train-log {output.train_log} --health {output.health}"
        " --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"
