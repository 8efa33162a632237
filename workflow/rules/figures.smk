# Tables and figures of the default run (seed `seed`): models, search vs random, detection, ranking
# quality, the ablation and the claims table; the claims need `replicates` for intervals over seeds.
rule figures:
    input:
        **chain_outputs(SEED),
        reference=rules.reference.output,
        ablation=ABLATION_OUTPUTS,  # empty unless ablation.enabled
    output:
        tables=expand(
            f"{R}/tables/{{table}}.{{ext}}",
            table=["models", "search_vs_random", "detection", "ranking", "claims"],
            ext=["csv", "md", "tex"],
        ),
        claims=report(
            f"{R}/tables/claims.html",
            caption="../report/claims.rst",
            category="Claims",
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
        cfg=stage_config("search", "retrain", "reference", "ablation", "figures"),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.tables[0])),
    log:
        f"{R}/logs/figures.log",
    conda:
        ENV
    shell:
        "vitnas figures --config {params.cfg:q} --results {params.results} > {log} 2>&1"
