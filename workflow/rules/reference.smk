# The stand-alone reference that every supernet's ranking quality is measured against: fixed
# architectures across the budget windows, each trained from scratch with several seeds (one job
# per training seed, so they run side by side), then merged into one table.
REFERENCE_SEEDS = [SEED + k for k in range(config["reference"]["seeds"])]


rule reference_seed:
    input:
        train=rules.prepare_data.output.train,
        search=rules.prepare_data.output.search,
    output:
        f"{P}/reference/standalone_seed{{refseed}}.csv",
    params:
        cfg=stage_config("reference"),
        checkpoints=f"{CKPT}/{{space}}/reference",
    priority: 3  # long jobs that rankings wait for: start them early
    resources:
        gpu=0,  # set per cluster in slurm/config.yaml
    threads: config["reference"]["threads"]
    log:
        f"{P}/logs/reference_seed{{refseed}}.log",
    benchmark:
        f"{P}/benchmarks/reference_seed{{refseed}}.tsv"
    conda:
        ENV
    shell:
        "vitnas reference --train-seed {wildcards.refseed} --config {params.cfg:q} --data $(dirname {input.train})"
        " --out {output} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"


rule reference:
    input:
        expand(f"{P}/reference/standalone_seed{{refseed}}.csv", refseed=REFERENCE_SEEDS, allow_missing=True),
    output:
        f"{P}/reference/standalone.csv",
    params:
        cfg=stage_config("reference"),
    log:
        f"{P}/logs/reference.log",
    conda:
        ENV
    shell:
        "vitnas reference --merge {input} --config {params.cfg:q} --out {output} > {log} 2>&1"
