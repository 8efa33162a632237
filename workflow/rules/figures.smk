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
        claims=report(
            f"{P}/tables/claims.html",
            caption="../report/claims.rst",
            category="Claims",
        ),
        pareto=report(
            expand(f"{P}/figures/pareto.{{ext}}", ext=config["figures"]["formats"], allow_missing=True),
            caption="../report/pareto.rst",
            category="Search",
        ),
        progress=report(
            expand(f"{P}/figures/search_progress.{{ext}}", ext=config["figures"]["formats"], allow_missing=True),
            caption="../report/search_progress.rst",
            category="Search",
        ),
        ablation=expand(
            f"{P}/{{path}}",
            path=(
                [f"tables/ablation.{ext}" for ext in ("csv", "md", "tex")]
                + [f"figures/ablation_tau.{ext}" for ext in config["figures"]["formats"]]
            )
            if config["ablation"]["enabled"]
            else [],
            allow_missing=True,
        ),
    params:
        cfg=stage_config("search", "retrain", "reference", "ablation", "figures"),
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
