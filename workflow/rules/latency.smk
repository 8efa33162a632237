# search.latency_vs_macs: per listed MACs budget, a latency-constrained search of the same
# supernet under the MACs search's pick's latency as the device's table predicts it, then both
# picks timed end to end on search.latency's device (vitnas.latency_compare); its record feeds the claims row "at equal measured
# latency, the latency-constrained search beats the MACs-constrained one" (chain_records kind
# latency_vs_macs: the tables wait for it). The device's latency table is built once per device
# fingerprint under <space>/latency/, not a declared output (file-locked, shared by every job).
rule latency_vs_macs:
    input:
        search=rules.prepare_data.output.search,
        supernet=supernet_of,
        best=results.search_best(R, "{space}", "{seed}", "{budget}"),
    output:
        record=results.latency_vs_macs(R, "{space}", "{seed}", "{budget}"),
        history=results.latency_vs_macs_history(R, "{space}", "{seed}", "{budget}"),
    params:
        cfg=stage_config("latency_vs_macs"),
        checkpoints=checkpoints("search"),
    threads: config["search"]["threads"]
    log:
        results.log(R, "latency_vs_macs_{budget}", "{space}", "{seed}"),
    benchmark:
        results.benchmark(R, "latency_vs_macs_{budget}", "{space}", "{seed}")
    conda:
        ENV
    shell:
        "vitnas latency-vs-macs --seed {wildcards.seed} --budget {wildcards.budget} --config {params.cfg:q}"
        " --data $(dirname {input.search}) --supernet {input.supernet} --best {input.best}"
        " --out $(dirname {output.record}) --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"
