# The stand-alone reference that every supernet's ranking quality is measured against: fixed
# architectures across the budget windows, each trained from scratch with several seeds.
rule reference:
    input:
        train=rules.prepare_data.output.train,
        search=rules.prepare_data.output.search,
    output:
        f"{R}/reference/standalone.csv",
    params:
        cfg=stage_config("search", "retrain", "reference"),
        checkpoints=f"{CKPT}/reference",
    priority: 3  # a long job that rankings wait for: start it early
    resources:
        gpu=0,  # set per cluster in slurm/config.yaml
    threads: config["reference"]["threads"]
    log:
        f"{R}/logs/reference.log",
    benchmark:
        f"{R}/benchmarks/reference.tsv"
    conda:
        ENV
    shell:
        "vitnas reference --config {params.cfg:q} --data $(dirname {input.train})"
        " --out {output} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"
