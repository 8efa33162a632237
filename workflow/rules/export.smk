# The searched network of each budget (each Pareto pick, under search.mode: pareto) with the
# supernet's inherited weights, untrained: its weights (the format retrain writes), its ONNX file
# and its test metrics with latency (the models table's `inh` rows). Cheap (no training), so part of the default run.
rule export:
    input:
        arch=lambda wildcards: results.search_best(R, wildcards.space, wildcards.seed, wildcards.budget),
        supernet=supernet_of,
        test=rules.prepare_data.output.test,
    output:
        weights=results.export_weights(R, "{space}", "{seed}", "{budget}"),
        onnx=results.export_onnx(R, "{space}", "{seed}", "{budget}"),
        metrics=results.export_metrics(R, "{space}", "{seed}", "{budget}"),
    params:
        cfg=stage_config("export"),
    threads: config["retrain"]["threads"]
    log:
        results.log(R, "export_{budget}", "{space}", "{seed}"),
    benchmark:
        results.benchmark(R, "export_{budget}", "{space}", "{seed}")
    conda:
        ENV
    shell:
        "vitnas export --seed {wildcards.seed} --budget {wildcards.budget} --arch {input.arch} --config {params.cfg:q}"
        " --supernet {input.supernet} --data $(dirname {input.test}) --weights {output.weights} --onnx {output.onnx}"
        " --metrics {output.metrics} --threads {threads} > {log} 2>&1"
