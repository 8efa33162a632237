# The stand-alone reference that every supernet's ranking quality is measured against: fixed
# architectures across the budget windows, each trained from scratch with several seeds (one job
# per training seed, so they run side by side), then merged into one table.
REFERENCE_SEEDS = [SEED + k for k in range(config["reference"]["seeds"])]


rule reference_seed:
    input:
        train=rules.prepare_data.output.train,
        search=rules.prepare_data.output.search,
    output:
        results.reference_part(R, "{space}", "{refseed}"),
    params:
        cfg=stage_config("reference"),
        checkpoints=checkpoints("reference"),
    priority: 3  # long jobs that rankings wait for: start them early
    resources:
        gpu=0,  # set per cluster in slurm/config.yaml
    threads: config["reference"]["threads"]
    log:
        results.log(R, "reference_seed{refseed}", "{space}"),
    benchmark:
        results.benchmark(R, "reference_seed{refseed}", "{space}")
    conda:
        ENV
    shell:
        "vitnas reference --train-seed {wildcards.refseed} --config {params.cfg:q} --data $(dirname {input.train})"
        " --out {output} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"


rule reference:
    input:
        expand(results.reference_part(R, "{space}", "{refseed}"), refseed=REFERENCE_SEEDS, allow_missing=True),
    output:
        results.reference_table(R, "{space}"),
    params:
        cfg=stage_config("reference"),
    log:
        results.log(R, "reference", "{space}"),
    conda:
        ENV
    shell:
        "vitnas reference --merge {input} --config {params.cfg:q} --out {output} > {log} 2>&1"
