rule search:
    input:
        search=rules.prepare_data.output.search,
        supernet=supernet_of,
    output:
        best=f"{S}/search/{{budget}}/best.json",
        history=f"{S}/search/{{budget}}/history.csv",
    params:
        cfg=stage_config("search"),
        checkpoints=f"{CKPT}/{{space}}/search",
    priority: 5  # on the critical path: schedule before retrain/transfer of baselines
    threads: config["search"]["threads"]
    log:
        f"{P}/logs/seed{{seed}}/search_{{budget}}.log",
    benchmark:
        f"{P}/benchmarks/seed{{seed}}/search_{{budget}}.tsv"
    conda:
        ENV
    shell:
        "vitnas search --seed {wildcards.seed} --method evolution --budget {wildcards.budget} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet} --history {output.history}"
        " --best {output.best} --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"


rule random_search:
    input:
        search=rules.prepare_data.output.search,
        supernet=supernet_of,
    output:
        history=f"{S}/search/{{budget}}/random_history.csv",
    params:
        cfg=stage_config("search"),
        checkpoints=f"{CKPT}/{{space}}/search",
    priority: 5  # on the critical path: schedule before retrain/transfer of baselines
    threads: config["search"]["threads"]
    log:
        f"{P}/logs/seed{{seed}}/random_search_{{budget}}.log",
    benchmark:
        f"{P}/benchmarks/seed{{seed}}/random_search_{{budget}}.tsv"
    conda:
        ENV
    shell:
        "vitnas search --seed {wildcards.seed} --method random --budget {wildcards.budget} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet} --history {output.history}"
        " --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"
