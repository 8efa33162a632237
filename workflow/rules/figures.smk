# Tables and figures of the default run (seed `seed`), per space: models, search vs random,
# detection, ranking quality, the ablation and the claims table (the claims need `replicates` for
# intervals over seeds); then the families side by side.
rule figures:
    input:
        unpack(lambda wildcards: chain_outputs(SEED, [wildcards.space])),
        reference=rules.reference.output,
        ablation=lambda wildcards: ablation_outputs(wildcards.space),  # empty unless ablation.enabled
    output:
        tables=expand(
            f"{P}/tables/{{table}}.{{ext}}",
            table=["models", "search_vs_random", "detection", "ranking", "claims"],
            ext=["csv", "md", "tex"],
            allow_missing=True,
        ),
        # In `snakemake --report`: every table (as HTML) and figure, each with its caption.
        models=report(
            f"{P}/tables/models.html", caption="../report/models.rst", category="Models", subcategory="{space}"
        ),
        detection=report(
            f"{P}/tables/detection.html",
            caption="../report/detection.rst",
            category="Models",
            subcategory="{space}",
        ),
        search_vs_random=report(
            f"{P}/tables/search_vs_random.html",
            caption="../report/search_vs_random.rst",
            category="Search",
            subcategory="{space}",
        ),
        ranking=report(
            f"{P}/tables/ranking.html", caption="../report/ranking.rst", category="Ranking", subcategory="{space}"
        ),
        claims=report(
            f"{P}/tables/claims.html",
            caption="../report/claims.rst",
            category="Claims",
            subcategory="{space}",
        ),
        pareto=report(
            expand(f"{P}/figures/pareto.{{ext}}", ext=config["figures"]["formats"], allow_missing=True),
            caption="../report/pareto.rst",
            category="Search",
            subcategory="{space}",
        ),
        progress=report(
            expand(f"{P}/figures/search_progress.{{ext}}", ext=config["figures"]["formats"], allow_missing=True),
            caption="../report/search_progress.rst",
            category="Search",
            subcategory="{space}",
        ),
        ablation=expand(
            f"{P}/tables/ablation.{{ext}}",
            ext=["csv", "md", "tex"] if config["ablation"]["enabled"] else [],
            allow_missing=True,
        ),
        ablation_table=report(
            expand(f"{P}/tables/ablation.html", allow_missing=True) if config["ablation"]["enabled"] else [],
            caption="../report/ablation.rst",
            category="Ranking",
            subcategory="{space}",
        ),
        ablation_tau=report(
            expand(
                f"{P}/figures/ablation_tau.{{ext}}",
                ext=config["figures"]["formats"] if config["ablation"]["enabled"] else [],
                allow_missing=True,
            ),
            caption="../report/ablation_tau.rst",
            category="Ranking",
            subcategory="{space}",
        ),
    params:
        cfg=stage_config("figures"),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.tables[0])),
    log:
        f"{P}/logs/figures.log",
    conda:
        ENV
    shell:
        "vitnas figures --config {params.cfg:q} --results {params.results} > {log} 2>&1"


rule families:
    input:
        [f for kind in ("metrics", "detection") for f in chain_outputs(SEED)[kind]],
    output:
        tables=expand(f"{R}/tables/families.{{ext}}", ext=["csv", "md", "tex"]),
        table=report(f"{R}/tables/families.html", caption="../report/families_table.rst", category="Families"),
        figures=report(
            expand(
                f"{R}/figures/families_{{x}}.{{ext}}",
                x=["macs", "throughput", "detection"],
                ext=config["figures"]["formats"],
            ),
            caption="../report/families.rst",
            category="Families",
        ),
    params:
        cfg=json.dumps(config, sort_keys=True),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.tables[0])),
    log:
        f"{R}/logs/families.log",
    conda:
        ENV
    shell:
        "vitnas families --config {params.cfg:q} --results {params.results} > {log} 2>&1"


# Published numbers (published.file) beside the retrained models that published.match names; with
# no match (the embedded default) the published rows alone.
rule published:
    input:
        references=PUBLISHED,
        models=vitnas.published.input_files(config, R, SEED),
    output:
        tables=expand(f"{R}/tables/published.{{ext}}", ext=["csv", "md", "tex"]),
        table=report(f"{R}/tables/published.html", caption="../report/published.rst", category="Published"),
    params:
        cfg=json.dumps(config, sort_keys=True),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.tables[0])),
    log:
        f"{R}/logs/published.log",
    conda:
        ENV
    shell:
        "vitnas published --config {params.cfg:q} --results {params.results} --references {input.references:q} "
        "> {log} 2>&1"
