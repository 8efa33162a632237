# `snakemake replicates`: the chain supernet -> search -> retrain -> transfer for `replicates`
# seeds (seed, seed+1, ...; the default run's seed is the first and is reused) and the ablation
# study (its claims), then every model and every claim with its mean, SD and 95 % interval. Not
# part of the default run. With retrain.compare_finetune, every seed (the default one included)
# also gets ft-<budget>, fine-tuned from the export, for AutoFormer's claim.
rule replicates_report:
    input:
        lambda wildcards: [f for seed in SEEDS
                           for files in chain_outputs(seed, [wildcards.space], replicates=True).values()
                           for f in files],
        lambda wildcards: ablation_targets(wildcards.space),  # whether or not the default run includes it
    output:
        tables=expand(
            results.table(R, "{table}", "{ext}", "{space}", replicates=True),
            table=["replicates", "claims", "ablation"],
            ext=["csv", "md", "tex"],
            allow_missing=True,
        ),
        ablation_tau=report(
            expand(
                results.figure(R, "ablation_tau", "{ext}", "{space}", replicates=True),
                ext=config["figures"]["formats"],
                allow_missing=True,
            ),
            caption="../report/ablation_tau.rst",
            category="Ranking",
            subcategory="{space}: replicates",
        ),
        claims=report(
            results.table(R, "claims", "html", "{space}", replicates=True),
            caption="../report/claims.rst",
            category="Claims",
            subcategory="{space}: replicates",
        ),
        replicates=report(
            results.table(R, "replicates", "html", "{space}", replicates=True),
            caption="../report/replicates.rst",
            category="Models",
            subcategory="{space}: replicates",
        ),
        ablation_table=report(
            results.table(R, "ablation", "html", "{space}", replicates=True),
            caption="../report/ablation.rst",
            category="Ranking",
            subcategory="{space}: replicates",
        ),
    params:
        cfg=stage_config("figures"),
        seeds=",".join(map(str, SEEDS)),
    log:
        results.log(R, "replicates_report", "{space}"),
    conda:
        ENV
    shell:
        "vitnas figures --replicates {params.seeds} --config {params.cfg:q} > {log} 2>&1"


rule replicates:
    input:
        expand(results.table(R, "claims", "html", "{space}", replicates=True), space=SPACES),
