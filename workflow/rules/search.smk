rule search:
    input:
        search=rules.prepare_data.output.search,
        supernet=rules.train_supernet.output.weights,
    output:
        best=f"{R}/search/{{budget}}/best.json",
        history=f"{R}/search/{{budget}}/history.csv",
    params:
        cfg=stage_config("search"),
        checkpoints=f"{CKPT}/search",
    priority: 5  # on the critical path: schedule before retrain/transfer of baselines
    threads: config["search"]["threads"]
    log:
        f"{R}/logs/search_{{budget}}.log",
    benchmark:
        f"{R}/benchmarks/search_{{budget}}.tsv"
    conda:
        ENV
    shell:
        "vitnas search --method evolution --budget {wildcards.budget} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet} --history {output.history}"
        " --best {output.best} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"


rule random_search:
    input:
        search=rules.prepare_data.output.search,
        supernet=rules.train_supernet.output.weights,
    output:
        history=f"{R}/search/{{budget}}/random_history.csv",
    params:
        cfg=stage_config("search"),
        checkpoints=f"{CKPT}/search",
    priority: 5  # on the critical path: schedule before retrain/transfer of baselines
    threads: config["search"]["threads"]
    log:
        f"{R}/logs/random_search_{{budget}}.log",
    benchmark:
        f"{R}/benchmarks/random_search_{{budget}}.tsv"
    conda:
        ENV
    shell:
        "vitnas search --method random --budget {wildcards.budget} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet} --history {output.history}"
        " --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"
