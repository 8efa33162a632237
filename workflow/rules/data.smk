rule prepare_data:
    output:
        train=results.data_split(R, "train"),
        search=results.data_split(R, "search"),
        test=results.data_split(R, "test"),
        manifest=results.data_manifest(R),
        held_out=results.held_out_list(R),  # the held-out images, for data.held_out_list of another run
    params:
        cfg=stage_config("prepare_data"),
    log:
        results.log(R, "prepare_data"),
    conda:
        ENV
    shell:
        "vitnas prepare-data --config {params.cfg:q} --out $(dirname {output.manifest}) > {log} 2>&1"
