# The known answer (known_answer.space, e.g. config/nasbench_macro.yaml): NAS-Bench-Macro's
# networks ranked by the space's supernet of each arm against the benchmark's accuracies, and
# searches on those scores judged by the benchmark. Its claims join that space's claims table.
if KNOWN_SPACE:

    rule known_answer:
        input:
            search=rules.prepare_data.output.search,
        output:
            ranking=results.known_answer_file(R, KNOWN_SPACE, "ranking.json"),
            tables=[results.known_answer_file(R, KNOWN_SPACE, name) for name in results.KNOWN_ANSWER_FILES[1:]],
        params:
            cfg=lambda wildcards: json.dumps(
                vitnas.config.stage_config(SCFG[KNOWN_SPACE], "known_answer"), sort_keys=True
            ),
            checkpoints=results.checkpoint_dir(config["experiment"], KNOWN_SPACE, "known_answer"),
        # one process: every arm's supernet, then thousands of small scoring jobs (slurm/config.yaml)
        threads: config["supernet"]["threads"]
        log:
            results.log(R, "known_answer", KNOWN_SPACE),
        benchmark:
            results.benchmark(R, "known_answer", KNOWN_SPACE)
        conda:
            ENV
        shell:
            "vitnas known-answer --config {params.cfg:q} --data $(dirname {input.search}) --out $(dirname {output.ranking})"
            " --checkpoints {params.checkpoints} --threads {threads} > {log} 2>&1"
