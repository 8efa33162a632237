# search.mode: per_budget searches each budget alone (rule search); pareto runs one search of the
# shared supernet for every budget (rule pareto_search_<space>), which writes each budget's
# best.json and history.csv where the per-budget search would, so retraining and the tables read
# them unchanged. Random search stays per budget either way.
PARETO_SPACES = [s for s in SPACES if SCFG[s]["search"]["mode"] == "pareto"]
PER_BUDGET_SPACES = [s for s in SPACES if s not in PARETO_SPACES]


rule search:
    input:
        search=rules.prepare_data.output.search,
        supernet=supernet_of,
    wildcard_constraints:
        space="|".join(PER_BUDGET_SPACES) or "(?!)",  # pareto spaces' files: from pareto_search (none: matches nothing)
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


for _space in PARETO_SPACES:  # one rule per space: its outputs name each of its budgets

    rule:
        name:
            f"pareto_search_{_space}"
        input:
            search=rules.prepare_data.output.search,
            supernet=results.supernet_weights(R, _space, "{seed}", "shared"),
        output:
            front=results.pareto_front(R, _space, "{seed}"),
            history=results.pareto_history(R, _space, "{seed}"),
            best=[results.search_best(R, _space, "{seed}", b) for b in budgets(_space)],
            budget_history=[results.search_history(R, _space, "{seed}", b) for b in budgets(_space)],
        params:
            cfg=json.dumps(vitnas.config.stage_config(SCFG[_space], "search"), sort_keys=True),
            checkpoints=results.checkpoint_dir(config["experiment"], _space, "search"),
        priority: 5
        threads: config["search"]["threads"]
        log:
            results.log(R, "pareto_search", _space, "{seed}"),
        benchmark:
            results.benchmark(R, "pareto_search", _space, "{seed}")
        conda:
            ENV
        shell:
            "vitnas pareto-search --seed {wildcards.seed} --config {params.cfg:q}"
            " --data $(dirname {input.search}) --supernet {input.supernet} --front {output.front}"
            " --history {output.history} --best {output.best} --budget-history {output.budget_history}"
            " --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"

    rule:
        name:
            f"pareto_figure_{_space}"
        input:
            results.pareto_history(R, _space, SEED),
        output:
            report(
                expand(results.figure(R, "pareto_front", "{ext}", _space), ext=config["figures"]["formats"]),
                caption="../report/pareto_front.rst",
                category="Search",
                subcategory=_space,
            ),
        params:
            cfg=json.dumps(vitnas.config.stage_config(SCFG[_space], "figures"), sort_keys=True),
        log:
            results.log(R, "pareto_figure", _space),
        conda:
            ENV
        shell:
            "vitnas pareto-figure --config {params.cfg:q} > {log} 2>&1"
