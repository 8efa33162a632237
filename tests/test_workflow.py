"""The Snakemake workflow: planning, lint, config errors, and one tiny end-to-end run."""
import json
import re

import pandas as pd
import pytest

from conftest import REPO, needs_fmnist, run, workflow_copy

STAGES = {"prepare_data", "train_supernet", "search", "random_search", "design_baseline",
          "retrain", "compose_detection", "transfer", "figures"}
ABLATION = {"ablation_standalone", "ablation_supernet", "ablation_ranking", "ablation_search"}


@pytest.mark.parametrize("ablation", [False, True])
def test_dry_run_plans_every_stage(tmp_path, ablation):
    (tmp_path / "ablation.yaml").write_text(f"ablation: {{enabled: {str(ablation).lower()}}}\n")
    r = run(["snakemake", "-n", "--quiet", "rules", "-d", str(tmp_path), "-s", str(REPO / "Snakefile"),
             "--configfile", str(REPO / "config/config.yaml"), str(tmp_path / "ablation.yaml")],
            timeout=120)
    assert r.returncode == 0, r.stderr
    planned = set(re.findall(r"^(\w+)\s+\d+\s*$", r.stdout + r.stderr, re.M)) - {"total"}
    assert STAGES | {"all"} <= planned
    assert (ABLATION <= planned) == ablation and not (ABLATION & planned and not ablation)


def test_lint_is_clean():
    r = run(["snakemake", "--lint"], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("override, message", [
    ("supernet: {lr: -1}", "supernet.lr = -1 is out of range"),
    ("supernet: {learning_rate: 0.1}", "unknown key supernet.learning_rate"),
    ("search: {population: many}", "search.population = 'many' has the wrong type"),
    ('search: {budgets: ["50K"]}', "outside the space's MACs range [340.9K, 14.26M]"),
    ("space: {heads: [3], qkv_dims: [32]}", "3 heads do not divide QKV width 32"),
    ("ablation: {enabled: true, variants: [bogus]}", "ablation: unknown variant 'bogus'; choose from full"),
])
def test_bad_config_stops_with_one_clear_line(tmp_path, override, message):
    (tmp_path / "bad.yaml").write_text(override + "\n")
    r = run(["snakemake", "-n", "--configfile", str(tmp_path / "bad.yaml"), "-d", str(tmp_path),
             "-s", str(REPO / "Snakefile")], timeout=120)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert message in out
    assert "Traceback" not in out
    assert not (tmp_path / "results").exists()
    cli = run(["vitnas", "check-config", "--config", str(REPO / "config/config.yaml"),
               str(tmp_path / "bad.yaml")])
    assert cli.returncode == 1 and message in cli.stderr and "Traceback" not in cli.stderr


@needs_fmnist
@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    """All six stages and the ablation on the tiny config, then the tables' contents; a second run
    does nothing."""
    work = workflow_copy(tmp_path)
    cmd = ["snakemake", "--cores", "2", "--configfile", str(REPO / "tests/config/tiny.yaml")]
    r = run(cmd, cwd=work, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = work / "results/tiny"
    models = pd.read_csv(res / "tables/models.csv")
    assert len(models) == 4
    metrics = {m: json.loads((res / f"retrain/{m}/metrics.json").read_text())
               for m in ("evo-2M", "deit-2M", "evo-4M", "deit-4M")}
    for m in metrics.values():
        assert 0 <= m["top1"] <= 100 and m["params"] > 0 and m["throughput"] > 0
        assert m["macs"] <= {"2M": 2e6, "4M": 4e6}[m["budget"]]
    assert sorted(models.iloc[:, 0]) == sorted(metrics)
    svr = pd.read_csv(res / "tables/search_vs_random.csv")
    assert len(svr) == 2
    for budget in ("2M", "4M"):
        hist = pd.read_csv(res / f"search/{budget}/history.csv")
        rand = pd.read_csv(res / f"search/{budget}/random_history.csv")
        assert len(hist) == len(rand) == 4 + 1 * (2 + 2)
        assert (hist.macs <= hist.budget_macs).all() and (rand.macs <= rand.budget_macs).all()
        best = json.loads((res / f"search/{budget}/best.json").read_text())
        assert best["search"]["accuracy"] == pytest.approx(hist.accuracy.max())
    det = pd.read_csv(res / "tables/detection.csv")
    assert len(det) == 4
    for ext in ("png", "pdf"):
        assert (res / f"figures/pareto.{ext}").stat().st_size > 1000
        assert (res / f"figures/search_progress.{ext}").stat().st_size > 1000
        assert (res / f"figures/ablation_tau.{ext}").stat().st_size > 1000
    # The ablation study (tiny: two variants, four architectures).
    standalone = pd.read_csv(res / "ablation/standalone.csv")
    assert len(standalone) == 4 and standalone.macs.is_monotonic_increasing
    assert ((2e6 <= standalone.macs) & (standalone.macs <= 4e6)).all()
    ablation = pd.read_csv(res / "tables/ablation.csv")
    assert list(ablation.variant) == ["full", "autoformer"]
    for col in ("Kendall tau", "Spearman rho"):  # NaN only if one side's accuracies are all equal
        assert ablation[col].dropna().between(-1, 1).all()
    assert ablation["random mean (%)"].between(0, 100).all() and (ablation["NaNs"] == 0).all()
    for v in ("full", "autoformer"):
        ranking = json.loads((res / f"ablation/{v}/ranking.json").read_text())
        assert len(ranking["archs"]) == 4
        assert [a["standalone_accuracy"] for a in ranking["archs"]] == \
            pytest.approx(standalone.standalone_accuracy.tolist())
        best = json.loads((res / f"ablation/{v}/search.json").read_text())
        assert best["macs"] <= 2e6 and best["budget"] == "2M"
    assert "ablation" in (res / "tables/ablation.md").read_text()
    again = run(cmd + ["-n"], cwd=work, timeout=120)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_config_readme_documents_every_key():
    import yaml
    schema = yaml.safe_load((REPO / "src/vitnas/config.schema.yaml").read_text())
    readme = (REPO / "config/README.md").read_text()

    def keys(node, prefix=""):
        for name, sub in node.get("properties", {}).items():
            yield prefix + name
            ref = sub.get("$ref", "").rsplit("/", 1)[-1]
            yield from keys(schema["$defs"].get(ref, sub) if ref else sub, f"{prefix}{name}.")

    for key in keys(schema):
        leaf = key.split(".")[-1]
        if key.count(".") >= 2 and not key.startswith(("supernet.augment", "retrain.baseline")):
            continue  # retrain.augment.* is documented once, under supernet
        assert f"`{leaf}`" in readme or f"`{key.split('.', 1)[-1]}`" in readme, key


def test_missing_data_set_stops_before_anything_runs(tmp_path):
    (tmp_path / "nodata.yaml").write_text(f"data: {{root: {tmp_path / 'nowhere'}}}\n")
    r = run(["snakemake", "-n", "--configfile", str(tmp_path / "nodata.yaml"), "-d", str(tmp_path),
             "-s", str(REPO / "Snakefile")], timeout=120)
    assert r.returncode == 1
    out = (r.stdout + r.stderr).strip()
    assert out.splitlines() == [out.splitlines()[0]]  # one line
    assert "apt-get install dataset-fashion-mnist" in out and "data.root" in out


@pytest.mark.parametrize("configs, budgets", [
    (["imagenet_vitas.yaml"], 3), (["imagenet_vitas.yaml", "imagenet_vitas_large.yaml"], 1)])
def test_paper_config_plans_the_full_dag(tmp_path, configs, budgets):
    """The paper-scale DAG on an ImageNet-style root (a stand-in folder: nothing runs)."""
    for folder in ("train", "val"):
        (tmp_path / "imagenet" / folder / "n01").mkdir(parents=True)
    (tmp_path / "root.yaml").write_text(f"data: {{root: {tmp_path / 'imagenet'}}}\n")
    files = [str(REPO / "config" / c) for c in configs] + [str(tmp_path / "root.yaml")]
    r = run(["snakemake", "-n", "--quiet", "rules", "-d", str(tmp_path / "work"),
             "-s", str(REPO / "Snakefile"), "--configfile", *files], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", r.stdout + r.stderr, re.M))
    assert int(counts["search"]) == int(counts["random_search"]) == budgets
    assert int(counts["retrain"]) == int(counts["transfer"]) == 2 * budgets
    # With the cluster profile (found relative to the repository root): GPUs on the GPU rules.
    r = run(["snakemake", "-n", "--profile", "slurm", "-d", str(tmp_path / "work"),
             "-s", str(REPO / "Snakefile"), "--configfile", *files], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = re.findall(r"rule (\w+):.*?resources: ([^\n]*)", r.stdout + r.stderr, re.S)
    gpus = {rule: re.search(r"gpu=(\d+)", res) for rule, res in jobs}
    for rule in ("train_supernet", "retrain", "transfer"):  # multi-GPU (torchrun)
        assert gpus[rule] and int(gpus[rule].group(1)) >= 1, rule
    for rule in ("search", "random_search", "ablation_supernet", "ablation_standalone",
                 "ablation_ranking", "ablation_search"):  # one process, one GPU
        assert gpus[rule] and gpus[rule].group(1) == "1", rule
    assert not gpus["prepare_data"] or gpus["prepare_data"].group(1) == "0"


def test_identity_prob_error_names_the_allowed_values(tmp_path):
    (tmp_path / "bad.yaml").write_text("supernet: {identity_prob: often}\n")
    r = run(["vitnas", "check-config", "--config", str(REPO / "config/config.yaml"), str(tmp_path / "bad.yaml")])
    assert r.returncode == 1
    assert "supernet.identity_prob = 'often' is not allowed; use a number in [0, 1] or 'budget'" in r.stderr
