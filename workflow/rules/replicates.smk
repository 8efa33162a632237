# `snakemake replicates`: the chain supernet -> search -> retrain -> transfer for `replicates`
# seeds (seed, seed+1, ...; the default run's seed is the first and is reused) and the ablation
# study (its claims), then every model and every claim with its mean, SD and 95 % interval. Not
# part of the default run.
rule replicates_report:
    input:
        lambda wildcards: [f for seed in SEEDS for files in chain_outputs(seed, [wildcards.space]).values()
                           for f in files],
        lambda wildcards: ablation_targets(wildcards.space),  # whether or not the default run includes it
    output:
        tables=expand(
            f"{P}/replicates/tables/{{table}}.{{ext}}",
            table=["replicates", "claims", "ablation"],
            ext=["csv", "md", "tex"],
            allow_missing=True,
        ),
        ablation_tau=report(
            expand(f"{P}/replicates/figures/ablation_tau.{{ext}}", ext=config["figures"]["formats"], allow_missing=True),
            caption="../report/ablation_tau.rst",
            category="Ranking",
            subcategory="{space}: replicates",
        ),
        claims=report(
            f"{P}/replicates/tables/claims.html",
            caption="../report/claims.rst",
            category="Claims",
            subcategory="{space}: replicates",
        ),
        replicates=report(
            f"{P}/replicates/tables/replicates.html",
            caption="../report/replicates.rst",
            category="Models",
            subcategory="{space}: replicates",
        ),
        ablation_table=report(
            f"{P}/replicates/tables/ablation.html",
            caption="../report/ablation.rst",
            category="Ranking",
            subcategory="{space}: replicates",
        ),
    params:
        cfg=stage_config("figures"),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(os.path.dirname(output.tables[0]))),
        seeds=",".join(map(str, SEEDS)),
    log:
        f"{P}/logs/replicates_report.log",
    conda:
        ENV
    shell:
        "vitnas figures --replicates {params.seeds} --config {params.cfg:q} --results {params.results} > {log} 2>&1"


rule replicates:
    input:
        expand(f"{P}/replicates/tables/claims.html", space=SPACES),
