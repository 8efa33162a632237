rule prepare_data:
    output:
        train=f"{R}/data/train.npz",
        search=f"{R}/data/search.npz",
        test=f"{R}/data/test.npz",
        manifest=f"{R}/data/manifest.csv",
        held_out=f"{R}/data/held_out.txt",  # the held-out images, for data.held_out_list of another run
    params:
        cfg=stage_config("prepare_data"),
    log:
        f"{R}/logs/prepare_data.log",
    conda:
        ENV
    shell:
        "vitnas prepare-data --config {params.cfg:q} --out $(dirname {output.manifest}) > {log} 2>&1"
