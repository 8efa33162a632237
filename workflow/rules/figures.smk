# Tables and figures of the default run (seed `seed`), per space: models, search vs random,
# latency vs MACs (empty unless search.latency_vs_macs), detection, ranking quality, the ablation
# and the claims table (the claims need `replicates` for
# intervals over seeds); then the families side by side.
rule figures:
    input:
        unpack(lambda wildcards: chain_outputs(SEED, [wildcards.space])),
        reference=rules.reference.output,
        ablation=lambda wildcards: ablation_outputs(wildcards.space),  # empty unless ablation.enabled
        known=lambda wildcards: known_answer_outputs(wildcards.space),  # empty unless known_answer.space
    output:
        tables=expand(
            results.table(R, "{table}", "{ext}", "{space}"),
            table=["models", "search_vs_random", "latency_vs_macs", "detection", "ranking", "claims"],
            ext=["csv", "md", "tex"],
            allow_missing=True,
        ),
        # In `snakemake --report`: every table (as HTML) and figure, each with its caption.
        models=report(
            results.table(R, "models", "html", "{space}"),
            caption="../report/models.rst",
            category="Models",
            subcategory="{space}",
        ),
        latency_vs_macs=report(
            results.table(R, "latency_vs_macs", "html", "{space}"),
            caption="../report/latency_vs_macs.rst",
            category="Search",
            subcategory="{space}",
        ),
        detection=report(
            results.table(R, "detection", "html", "{space}"),
            caption="../report/detection.rst",
            category="Models",
            subcategory="{space}",
        ),
        search_vs_random=report(
            results.table(R, "search_vs_random", "html", "{space}"),
            caption="../report/search_vs_random.rst",
            category="Search",
            subcategory="{space}",
        ),
        ranking=report(
            results.table(R, "ranking", "html", "{space}"),
            caption="../report/ranking.rst",
            category="Ranking",
            subcategory="{space}",
        ),
        claims=report(
            results.table(R, "claims", "html", "{space}"),
            caption="../report/claims.rst",
            category="Claims",
            subcategory="{space}",
        ),
        pareto=report(
            expand(
                results.figure(R, "pareto", "{ext}", "{space}"),
                ext=config["figures"]["formats"],
                allow_missing=True,
            ),
            caption="../report/pareto.rst",
            category="Search",
            subcategory="{space}",
        ),
        progress=report(
            expand(
                results.figure(R, "search_progress", "{ext}", "{space}"),
                ext=config["figures"]["formats"],
                allow_missing=True,
            ),
            caption="../report/search_progress.rst",
            category="Search",
            subcategory="{space}",
        ),
        ablation=expand(
            results.table(R, "ablation", "{ext}", "{space}"),
            ext=["csv", "md", "tex"] if config["ablation"]["enabled"] else [],
            allow_missing=True,
        ),
        ablation_table=report(
            expand(results.table(R, "ablation", "html", "{space}"), allow_missing=True)
            if config["ablation"]["enabled"]
            else [],
            caption="../report/ablation.rst",
            category="Ranking",
            subcategory="{space}",
        ),
        ablation_tau=report(
            expand(
                results.figure(R, "ablation_tau", "{ext}", "{space}"),
                ext=config["figures"]["formats"] if config["ablation"]["enabled"] else [],
                allow_missing=True,
            ),
            caption="../report/ablation_tau.rst",
            category="Ranking",
            subcategory="{space}",
        ),
    params:
        cfg=stage_config("figures"),
    log:
        results.log(R, "figures", "{space}"),
    conda:
        ENV
    shell:
        "vitnas figures --config {params.cfg:q} > {log} 2>&1"


rule families:
    input:
        [f for kind in ("metrics", "inherited", "detection") for f in chain_outputs(SEED)[kind]],
    output:
        tables=expand(results.table(R, "families", "{ext}"), ext=["csv", "md", "tex"]),
        table=report(results.table(R, "families", "html"), caption="../report/families_table.rst", category="Families"),
        figures=report(
            expand(
                results.figure(R, "families_{x}", "{ext}"),
                x=["macs", "throughput", "latency", "detection"],
                ext=config["figures"]["formats"],
            ),
            caption="../report/families.rst",
            category="Families",
        ),
    params:
        cfg=json.dumps(config, sort_keys=True),
    log:
        results.log(R, "families"),
    conda:
        ENV
    shell:
        "vitnas families --config {params.cfg:q} > {log} 2>&1"


# Published numbers (published.file) beside the retrained models that published.match names; with
# no match (the embedded default) the published rows alone. The networks with an arch file (and the
# matched ones) are timed here, batch 1 on the CPU: the papers give no CPU latency.
rule published:
    input:
        references=PUBLISHED,
        models=vitnas.published.input_files(config, R, SEED),
    output:
        tables=expand(results.table(R, "published", "{ext}"), ext=["csv", "md", "tex"]),
        table=report(results.table(R, "published", "html"), caption="../report/published.rst", category="Published"),
        latency=results.table(R, "published_latency", "json"),
        figure=report(
            expand(results.figure(R, "published_latency", "{ext}"), ext=config["figures"]["formats"]),
            caption="../report/published_latency.rst",
            category="Published",
        ),
    threads: config["published"]["threads"]
    params:
        cfg=json.dumps(config, sort_keys=True),
    log:
        results.log(R, "published"),
    conda:
        ENV
    shell:
        "vitnas published --config {params.cfg:q} --references {input.references:q} --threads {threads}"
        " > {log} 2>&1"
