rule figures:
    input:
        evolution=expand(f"{R}/search/{{budget}}/history.csv", budget=BUDGETS),
        random=expand(f"{R}/search/{{budget}}/random_history.csv", budget=BUDGETS),
        metrics=expand(f"{R}/retrain/{{model}}/metrics.json", model=MODELS),
        detection=expand(f"{R}/transfer/{{model}}/coco_eval.json", model=MODELS),
        ablation=ABLATION_OUTPUTS,  # empty unless ablation.enabled
    output:
        tables=expand(
            f"{R}/tables/{{table}}.{{ext}}",
            table=["models", "search_vs_random", "detection"],
            ext=["csv", "md", "tex"],
        ),
        pareto=report(
            expand(f"{R}/figures/pareto.{{ext}}", ext=config["figures"]["formats"]),
            caption="../report/pareto.rst",
            category="Search",
        ),
        progress=report(
            expand(f"{R}/figures/search_progress.{{ext}}", ext=config["figures"]["formats"]),
            caption="../report/search_progress.rst",
            category="Search",
        ),
        ablation=expand(
            f"{R}/{{path}}",
            path=(
                [f"tables/ablation.{ext}" for ext in ("csv", "md", "tex")]
                + [f"figures/ablation_tau.{ext}" for ext in config["figures"]["formats"]]
            )
            if ABLATION_ON
            else [],
        ),
    params:
        cfg=stage_config("search", "retrain", "ablation", "figures"),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.tables[0])),
    log:
        f"{R}/logs/figures.log",
    conda:
        ENV
    shell:
        "vitnas figures --config {params.cfg:q} --results {params.results} > {log} 2>&1"
