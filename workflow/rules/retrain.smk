rule design_baseline:
    output:
        results.baseline_arch(R, "{space}", "{budget}"),
    params:
        cfg=stage_config("design_baseline"),
    log:
        results.log(R, "design_baseline_{budget}", "{space}"),
    conda:
        ENV
    shell:
        "vitnas design-baseline --budget {wildcards.budget} --config {params.cfg:q} --out {output} > {log} 2>&1"


rule retrain:
    input:
        arch=arch_of,
        init=init_of,  # retrain.init: inherited: the export's weights of a searched network
        train=rules.prepare_data.output.train,
        test=rules.prepare_data.output.test,
    output:
        weights=results.retrain_weights(R, "{space}", "{seed}", "{model}"),
        onnx=results.retrain_onnx(R, "{space}", "{seed}", "{model}"),
        metrics=results.retrain_metrics(R, "{space}", "{seed}", "{model}"),
        train_log=results.retrain_train_log(R, "{space}", "{seed}", "{model}"),
    params:
        cfg=stage_config("retrain"),
        checkpoints=checkpoints("retrain"),
        init=lambda wildcards, input: f"--init {input.init}" if input.init else "",
    priority: 2  # long jobs before the ablation's, so no long job is left for the end
    resources:
        gpu=0,  # set per cluster in slurm/config.yaml
        nodes=1,  # more than one: data parallelism over nodes (slurm/config.yaml)
    threads: config["retrain"]["threads"]
    log:
        results.log(R, "retrain_{model}", "{space}", "{seed}"),
    benchmark:
        results.benchmark(R, "retrain_{model}", "{space}", "{seed}")
    conda:
        ENV
    shell:
        "launch {resources.gpu} {resources.nodes} retrain --seed {wildcards.seed} --model {wildcards.model} --arch {input.arch} --config {params.cfg:q}"
        " --data $(dirname {input.train}) --weights {output.weights} --onnx {output.onnx} --metrics {output.metrics}"
        " --train-log {output.train_log} --checkpoints {params.checkpoints} {params.init} --threads {threads} > {log} 2>&1"
