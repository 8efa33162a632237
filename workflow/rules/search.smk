rule search:
    input:
        search=rules.prepare_data.output.search,
        supernet=supernet_of,
    output:
        best=results.search_best(R, "{space}", "{seed}", "{budget}"),
        history=results.search_history(R, "{space}", "{seed}", "{budget}"),
    params:
        cfg=stage_config("search"),
        checkpoints=checkpoints("search"),
    priority: 5  # on the critical path: schedule before retrain/transfer of baselines
    threads: config["search"]["threads"]
    log:
        results.log(R, "search_{budget}", "{space}", "{seed}"),
    benchmark:
        results.benchmark(R, "search_{budget}", "{space}", "{seed}")
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
        history=results.random_history(R, "{space}", "{seed}", "{budget}"),
    params:
        cfg=stage_config("search"),
        checkpoints=checkpoints("search"),
    priority: 5  # on the critical path: schedule before retrain/transfer of baselines
    threads: config["search"]["threads"]
    log:
        results.log(R, "random_search_{budget}", "{space}", "{seed}"),
    benchmark:
        results.benchmark(R, "random_search_{budget}", "{space}", "{seed}")
    conda:
        ENV
    shell:
        "vitnas search --seed {wildcards.seed} --method random --budget {wildcards.budget} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet} --history {output.history}"
        " --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"
