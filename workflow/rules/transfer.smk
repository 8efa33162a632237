# transfer.dataset: composed fine-tunes on the set compose_detection writes; coco reads COCO 2017
# from transfer.root, which is no declared input (a dry run plans without the data; the transfer
# job checks the folder when it starts and names what is missing).
rule compose_detection:
    input:
        train=rules.prepare_data.output.train,
        test=rules.prepare_data.output.test,
    output:
        directory(results.detection_dir(R)),
    params:
        cfg=stage_config("compose_detection"),
    log:
        results.log(R, "compose_detection"),
    conda:
        ENV
    shell:
        "vitnas compose-detection --config {params.cfg:q} --data $(dirname {input.train})"
        " --out {output} > {log} 2>&1"


rule transfer:
    input:
        model=rules.retrain.output.weights,
        detection=lambda w: (str(rules.compose_detection.output[0])
                             if SCFG[w.space]["transfer"]["dataset"] == "composed" else []),
    output:
        results.coco_eval(R, "{space}", "{seed}", "{model}"),
    params:
        cfg=stage_config("transfer"),
        checkpoints=checkpoints("transfer"),
        detection=lambda w, input: f"--detection {input.detection}" if input.get("detection") else "",
    priority: 2  # long jobs before the ablation's, so no long job is left for the end
    resources:
        gpu=0,  # set per cluster in slurm/config.yaml
        nodes=1,  # more than one: data parallelism over nodes (slurm/config.yaml)
    threads: config["transfer"]["threads"]
    log:
        results.log(R, "transfer_{model}", "{space}", "{seed}"),
    benchmark:
        results.benchmark(R, "transfer_{model}", "{space}", "{seed}")
    conda:
        ENV
    shell:
        "launch {resources.gpu} {resources.nodes} transfer --seed {wildcards.seed} --name {wildcards.model} --model {input.model} {params.detection}"
        " --config {params.cfg:q} --out {output} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"
