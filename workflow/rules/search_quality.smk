# How good the search strategies are where the answer is known: evolution, random search and the
# Pareto search on NAS-Bench-Macro (shipped with the package), at this experiment's search size
# (and the papers' when search_quality.sizes asks), judged by regret at equal evaluations. Needs
# no data and no supernet; at the default size it takes seconds (benchmarks/README.md), so it is
# part of `all`.
rule search_quality:
    output:
        runs=results.search_quality_runs(R),
        curves=results.search_quality_curves(R),
        summary=results.search_quality_summary(R, "csv"),
        summary_md=results.search_quality_summary(R, "md"),
        tables=expand(results.table(R, "search_quality", "{ext}"), ext=["csv", "md", "tex"]),
        table=report(
            results.table(R, "search_quality", "html"),
            caption="../report/search_quality.rst",
            category="Search quality",
        ),
        figure=report(
            expand(results.search_quality_figure(R, "{ext}"), ext=config["figures"]["formats"]),
            caption="../report/search_quality_figure.rst",
            category="Search quality",
        ),
    params:
        cfg=json.dumps(vitnas.config.stage_config(config, "search_quality"), sort_keys=True),
    log:
        results.log(R, "search_quality"),
    benchmark:
        results.benchmark(R, "search_quality")
    conda:
        ENV
    shell:
        "vitnas search-quality --config {params.cfg:q} > {log} 2>&1"
