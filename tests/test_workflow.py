"""The Snakemake workflow: planning, lint, config errors, and one tiny end-to-end run."""
import json
import re

import pandas as pd
import pytest

from conftest import REPO, needs_fmnist, run, workflow_copy
from vitnas.claims import LATENCY_CLAIM

pytestmark = pytest.mark.slow  # every test here runs Snakemake (dry or real): not in the fast tier

STAGES = {"prepare_data", "train_supernet", "search", "random_search", "design_baseline",
          "retrain", "compose_detection", "transfer", "reference_seed", "reference", "ranking", "figures",
          "families", "published"}
ABLATION = {"ablation_supernet", "ablation_ranking", "ablation_search"}


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


@pytest.mark.parametrize("configs", [[], ["--configfile", "config/config.yaml", "config/nasbench_macro.yaml"]],
                         ids=["default", "known_answer"])  # the second defines rule known_answer
def test_lint_is_clean(configs):
    r = run(["snakemake", "--lint", *configs], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("override, message", [
    ("supernet: {lr: -1}", "supernet.lr = -1 is out of range"),
    ("supernet: {learning_rate: 0.1}", "unknown key supernet.learning_rate"),
    ("search: {population: many}", "search.population = 'many' has the wrong type"),
    ('search: {budgets: ["50K"]}', "spaces.vit: search.budgets: 50K (5e+04 MACs) lies outside the vit space's MACs range [340.9K, 14.26M]"),
    ("spaces: {vit: {heads: [3], qkv_dims: [32]}}", "3 heads do not divide QKV width 32"),
    ("ablation: {enabled: true, variants: [bogus]}", "ablation.variants: unknown variant 'bogus'; choose from"),
    ("spaces: {vit: {search: {min_budget_fraction: 0.999}}}",
     "spaces.vit: space.baseline: the widest DeiT-style baseline within 2M"),
    ("spaces: {resnas: {stages: [{embed_dims: [16], heads: [1], head_dim: 16, mlp_dims: [32], blocks: 2, removable: [5]}]}}",
     "spaces.resnas: space.stages"),
    ("spaces: {twins: {search: {latency_vs_macs: [4M], init: shrink}}}",
     "spaces.twins.search.latency_vs_macs: a latency search draws its first population"),
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


def planned_jobs(*args, target: str = "all") -> str:
    r = run(["snakemake", target, "-n", "-s", str(REPO / "Snakefile"), "--configfile",
             str(REPO / "config/config.yaml"), *args], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def test_one_supernet_per_budget_and_each_search_reads_its_own(tmp_path):
    (tmp_path / "two.yaml").write_text('search: {budgets: ["2M", "4M"]}\n')  # ViTAS at two budgets
    two = ("--configfile", str(REPO / "config/config.yaml"), str(tmp_path / "two.yaml"))
    out = planned_jobs("-d", str(tmp_path), *two)
    supernets = re.findall(r"rule train_supernet:.*?output: (\S+?)/supernet.safetensors", out, re.S)
    # ViTAS and Twins: one per budget; ViT-ResNAS (default config): one shared, as released.
    assert sorted(supernets) == ["results/default/resnas/seed0/supernet/shared", "results/default/twins/seed0/supernet/4M",
                                 "results/default/vit/seed0/supernet/2M", "results/default/vit/seed0/supernet/4M"]
    for rule in ("search", "random_search"):
        for inputs, output in re.findall(rf"rule {rule}:\s+input: ([^\n]*)\s+output: ([^\n]*)", out):
            budget = re.search(r"search/([0-9.]+[KMG])/", output).group(1)
            own = "shared" if "/resnas/" in output else budget
            assert f"seed0/supernet/{own}/supernet.safetensors" in inputs, (rule, inputs)
    # The switch back to one supernet shared by every budget.
    (tmp_path / "shared.yaml").write_text("supernet: {per_budget: false}\n")
    out = planned_jobs("-d", str(tmp_path), *two, str(tmp_path / "shared.yaml"))
    assert sorted(re.findall(r"rule train_supernet:.*?output: (\S+?)/supernet.safetensors", out, re.S)) == \
        ["results/default/resnas/seed0/supernet/shared", "results/default/twins/seed0/supernet/shared",
         "results/default/vit/seed0/supernet/shared"]
    assert out.count("vit/seed0/supernet/shared/supernet.safetensors") >= 5  # 2 searches, 2 random, ranking


def test_default_run_compares_resnas_4m_with_a_latency_search(tmp_path):
    """search.latency_vs_macs: [4M] in resnas: one job, reading that budget's pick and supernet, and
    its record an input of resnas's figures (the claims row and the latency_vs_macs table)."""
    out = planned_jobs("-d", str(tmp_path))
    jobs = re.findall(r"rule latency_vs_macs:\s+input: ([^\n]*)\s+output: ([^\n]*)", out)
    record = "results/default/resnas/seed0/search/4M/latency_versus_macs.json"
    assert jobs == [("results/default/data/search.npz, results/default/resnas/seed0/supernet/shared/supernet.safetensors, "
                     "results/default/resnas/seed0/search/4M/best.json",
                     f"{record}, results/default/resnas/seed0/search/4M/latency_history.csv")]
    figures = {space: inputs for inputs, space in
               re.findall(r"rule figures:\s+input: ([^\n]*)\s+output: results/default/(\w+)/tables/", out)}
    assert sorted(figures) == ["resnas", "twins", "vit"]
    assert record in figures["resnas"] and record not in figures["vit"] + figures["twins"]


def test_replicates_target_runs_the_chain_per_seed(tmp_path):
    out = planned_jobs("-d", str(tmp_path), "--quiet", "rules", target="replicates")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", out, re.M))
    # 3 seeds x 3 spaces of one budget and one supernet each; per space the reference (1 seed) and
    # the ablation (the ten ViTAS arms, the four of ViT-ResNAS and of Twins, whether or not `all`
    # has them) once.
    # Per seed and space evo, deit and (retrain.compare_finetune) ft are retrained; ft is not transferred.
    assert int(counts["train_supernet"]) == 9 and int(counts["retrain"]) == 27 and int(counts["transfer"]) == 18
    assert int(counts["reference_seed"]) == 3 and int(counts["ablation_supernet"]) == 18 and "figures" not in counts
    assert int(counts["latency_vs_macs"]) == 3  # resnas 4M (search.latency_vs_macs), per seed


def test_fine_tuned_models_read_the_export_weights_in_the_replicates_target_only(tmp_path):
    out = planned_jobs("-d", str(tmp_path), "-p", target="replicates")
    jobs = re.findall(r"rule retrain:\s+input: ([^\n]*)\s+output: ([^\n]*).*?Shell command: ([^\n]*)", out, re.S)
    ft = {re.search(r"(\w+)/seed(\d)/retrain/(ft-[0-9.]+[KMG])/", o).groups(): (i, sh) for i, o, sh in jobs
          if "/retrain/ft-" in o}
    assert sorted(ft) == sorted((space, str(seed), f"ft-{budget}") for space, budget in
                                (("vit", "2M"), ("resnas", "4M"), ("twins", "4M")) for seed in range(3))
    for (space, seed, model), (inputs, shell) in ft.items():
        export = f"results/default/{space}/seed{seed}/export/{model[3:]}/model.safetensors"
        best = f"results/default/{space}/seed{seed}/search/{model[3:]}/best.json"
        assert export in inputs and best in inputs and f"--init {export}" in shell, (model, inputs, shell)
    evo = [i for i, o, _ in jobs if "/retrain/evo-" in o]  # from scratch: no export weights
    assert evo and not any("export/" in i for i in evo)
    assert "/retrain/ft-" not in planned_jobs("-d", str(tmp_path))  # the default run trains none


@needs_fmnist
def test_tiny_end_to_end(tmp_path):
    """All six stages and the ablation on the tiny config, then the tables' contents; a second run
    does nothing."""
    work = workflow_copy(tmp_path)
    cmd = ["snakemake", "--cores", "2", "--configfile", str(REPO / "tests/config/tiny.yaml")]
    r = run(cmd, cwd=work, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    root = work / "results/tiny"
    res = root / "vit"  # the ViTAS space; the ViT-ResNAS space is checked after
    chain = res / "seed0"
    models = pd.read_csv(res / "tables/models.csv")
    assert len(models) == 6  # per budget: searched, its inherited-weight export, the baseline
    metrics = {m: json.loads((chain / f"retrain/{m}/metrics.json").read_text())
               for m in ("evo-2M", "deit-2M", "evo-4M", "deit-4M")}
    metrics |= {f"inh-{b}": json.loads((chain / f"export/{b}/metrics.json").read_text()) for b in ("2M", "4M")}
    for m in metrics.values():
        assert 0 <= m["top1"] <= 100 and m["params"] > 0 and m["throughput"] > 0
        assert m["latency_torch_ms"] > 0 and m["latency_ort_ms"] > 0
        assert m["onnx"]["max_abs_diff"] <= m["onnx"]["tolerance"]  # onnxruntime checked against torch
        budget = {"2M": 2e6, "4M": 4e6}[m["budget"]]
        assert 0.9 * budget <= m["macs"] <= budget  # searched and baseline: inside the window
    for b in ("2M", "4M"):  # the export is the searched network, untrained
        assert metrics[f"inh-{b}"]["arch"] == metrics[f"evo-{b}"]["arch"] and metrics[f"inh-{b}"]["train_steps"] == 0
        assert (chain / f"export/{b}/model.onnx").stat().st_size > 1000
    assert sorted(models.iloc[:, 0]) == sorted(metrics)
    assert set(models["window"]) == {"[1.8M, 2M]", "[3.6M, 4M]"}
    svr = pd.read_csv(res / "tables/search_vs_random.csv")
    assert len(svr) == 2
    for budget in ("2M", "4M"):
        hist = pd.read_csv(chain / f"search/{budget}/history.csv")
        rand = pd.read_csv(chain / f"search/{budget}/random_history.csv")
        assert len(hist) == len(rand) == 4 + 1 * (2 + 2)
        for h in (hist, rand):  # every candidate, the initial population included, in [0.9 C, C]
            assert (h.macs <= h.budget_macs).all() and (h.macs >= 0.9 * h.budget_macs).all()
            assert (h.window_lo == 0.9 * h.budget_macs).all() and (h.eval_images == 50).all()
            assert h.accuracy_se.round(6).tolist() == \
                [round(100 * ((a / 100) * (1 - a / 100) / 50) ** 0.5, 6) for a in h.accuracy]
        best = json.loads((chain / f"search/{budget}/best.json").read_text())
        assert best["search"]["accuracy"] == pytest.approx(hist.accuracy.max())
        # Its own supernet: trained for this budget, with usage recorded.
        health = json.loads((chain / f"supernet/{budget}/health.json").read_text())
        assert health["budget"] == budget and health["usage"]["steps"] == 20
        assert len(health["usage"]["layer_active"]) == 6 and isinstance(health["warnings"], list)
        sampled = json.loads((chain / f"supernet/{budget}/identity_prob.json").read_text())
        assert sampled["prob_budget"] == budget
        ranking = json.loads((chain / f"supernet/{budget}/ranking.json").read_text())
        assert set(ranking["scopes"]) == {"all", "window"} and ranking["scopes"]["window"]["n_archs"] == 2
    det = pd.read_csv(res / "tables/detection.csv")
    assert len(det) == 4
    for ext in ("png", "pdf"):
        assert (res / f"figures/pareto.{ext}").stat().st_size > 1000
        assert (res / f"figures/search_progress.{ext}").stat().st_size > 1000
        assert (res / f"figures/ablation_tau.{ext}").stat().st_size > 1000
    # The reference: 2 architectures per window x 2 seeds, inside the windows.
    reference = pd.read_csv(res / "reference/standalone.csv")
    assert len(reference) == 8 and sorted(reference.seed.unique()) == [0, 1]
    for budget, lo, hi in (("2M", 1.8e6, 2e6), ("4M", 3.6e6, 4e6)):
        macs = reference[reference.budget == budget].macs
        assert len(macs) == 4 and macs.between(lo, hi).all()
    ranking_table = pd.read_csv(res / "tables/ranking.csv")
    assert len(ranking_table) == 4  # two supernets x (all, window)
    claims = pd.read_csv(res / "tables/claims.csv")
    assert "searched beats the DeiT-style baseline at matched MACs" in set(claims.claim)
    assert set(claims.verdict) <= {"reproduced", "not reproduced", "inconclusive"}
    assert (res / "tables/claims.html").read_text().count("<tr") == len(claims) + 1
    # The ablation study (tiny: two arms).
    ablation = pd.read_csv(res / "tables/ablation.csv")
    assert list(ablation.variant) == ["full", "autoformer"]
    assert list(ablation.sampling) == ["layerwise", "depth"] and list(ablation.sharing) == ["cyclic", "prefix"]
    for col in ("Kendall tau", "Spearman rho"):  # NaN only if one side's accuracies are all equal
        assert ablation[col].dropna().between(-1, 1).all()
    assert ablation["random mean (%)"].between(0, 100).all()
    mean_reference = reference.groupby(["budget", "index"]).accuracy.mean()
    for v in ("full", "autoformer"):
        ranking = json.loads((res / f"ablation/{v}/ranking.json").read_text())
        assert len(ranking["archs"]) == 4
        assert [a["standalone_accuracy"] for a in ranking["archs"]] == \
            pytest.approx([mean_reference[a["budget"], a["index"]] for a in ranking["archs"]])
        best = json.loads((res / f"ablation/{v}/search.json").read_text())
        assert 1.8e6 <= best["macs"] <= 2e6 and best["budget"] == "2M"
    assert "ablation" in (res / "tables/ablation.md").read_text().lower()
    # The ViT-ResNAS space beside it: its window [0.975 C, C], k = 2 sub-networks per step (20 steps,
    # 40 sub-networks), its own arms, and the families table with both.
    resnas = root / "resnas"
    rmodels = pd.read_csv(resnas / "tables/models.csv")
    assert set(rmodels["window"]) == {"[3.9M, 4M]"}  # one budget in the default config
    for budget in ("4M",):
        hist = pd.read_csv(resnas / f"seed0/search/{budget}/history.csv")
        assert (hist.macs >= 0.975 * hist.budget_macs).all() and (hist.macs <= hist.budget_macs).all()
        assert json.loads((resnas / f"seed0/search/{budget}/best.json").read_text())["family"] == "resnas"
    health = json.loads((resnas / "seed0/supernet/shared/health.json").read_text())
    assert health["usage"]["steps"] == 40 and health["usage"]["layers"][0] == "s0.l0"
    assert list(pd.read_csv(resnas / "tables/ablation.csv").variant) == ["full"]
    lvm = pd.read_csv(resnas / "tables/latency_vs_macs.csv")  # search.latency_vs_macs: [4M] (config.yaml)
    assert list(lvm["MACs budget"]) == ["4M"] and (lvm["MACs pick measured (ms)"] > 0).all()
    assert (pd.read_csv(resnas / "tables/claims.csv").claim == LATENCY_CLAIM).sum() == 1
    # The Twins space: its hierarchical architectures through every stage.
    twins = root / "twins"
    best = json.loads((twins / "seed0/search/4M/best.json").read_text())
    assert best["family"] == "twins" and len(best["stages"]) == 2
    tmetrics = json.loads((twins / "seed0/retrain/evo-4M/metrics.json").read_text())
    assert 3.6e6 <= tmetrics["macs"] <= 4e6 and 0 <= tmetrics["top1"] <= 100
    assert json.loads((twins / "seed0/transfer/evo-4M/coco_eval.json").read_text())["AP"] is not None
    # All three families side by side: models, detection and the figures.
    families = pd.read_csv(root / "tables/families.csv")
    retrained = families[~families.model.str.startswith("inh-")]  # and one untrained export per budget
    assert sorted(families.space.unique()) == ["resnas", "twins", "vit"] and len(retrained) == 8 and len(families) == 12
    assert retrained["box AP (%)"].notna().all()
    for fig in ("macs", "throughput", "latency", "detection"):
        assert (root / f"figures/families_{fig}.png").stat().st_size > 1000
    # Published numbers: every model of config/references.yaml; nothing of this run matches one.
    from vitnas.references import load as load_references
    published = pd.read_csv(root / "tables/published.csv")
    assert published["published model"].nunique() == len(load_references(REPO / "config/references.yaml").entries)
    assert published["reproduced"].isna().all() and published["published"].notna().all()
    measured = json.loads((root / "tables/published_latency.json").read_text())
    assert measured["repeats"] == 3 and all(m["median_ms"] > 0 for m in measured["models"].values())
    assert (root / "figures/published_latency.png").stat().st_size > 1000
    for tex in root.rglob("*.tex"):  # every LaTeX table the project writes: booktabs rules
        assert all(rule in tex.read_text() for rule in ("\\toprule", "\\midrule", "\\bottomrule")), tex
    again = run(cmd + ["-n"], cwd=work, timeout=120)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # Snakemake's HTML report: self-contained, every table and figure in it with its caption (the
    # replicates caption belongs to `snakemake replicates`, not run here).
    report = run(cmd + ["--report", str(work / "report.html")], cwd=work, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (work / "report.html").read_text()
    for caption in (REPO / "workflow/report").glob("*.rst"):
        if caption.stem in ("replicates", "pareto_front"):  # `snakemake replicates`; search.mode: pareto
            continue
        # The caption's text between jinja expressions and markup (rendered differently in the page).
        parts = [p.strip() for p in re.split(r"\{\{.*?\}\}|\*\*|``|'", caption.read_text())
                 if len(p.strip()) >= 20]
        assert parts and all(p in page for p in parts), caption.name
    for space in ("vit", "resnas", "twins"):  # per-space captions name their space
        assert f"Retrained models of the <strong>{space}</strong> space" in page
    for name in ("tables/published.html", "figures/published_latency.png", "tables/families.html", "vit/tables/models.html",
                 "vit/tables/ablation.html", "vit/figures/pareto.png", "resnas/tables/claims.html"):
        assert f"results/tiny/{name}" in page, name


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
    """A dry run plans without the data; a real run stops at once, the fix on its last line."""
    (tmp_path / "nodata.yaml").write_text(f"data: {{root: {tmp_path / 'nowhere'}}}\n")
    cmd = ["snakemake", "--configfile", str(tmp_path / "nodata.yaml"), "-d", str(tmp_path), "-s", str(REPO / "Snakefile")]
    assert run(cmd + ["-n"], timeout=120).returncode == 0
    r = run(cmd + ["--cores", "1"], timeout=120)
    assert r.returncode == 1
    out = (r.stdout + r.stderr).strip()
    assert "Traceback" not in out
    assert out.splitlines()[-1].startswith("vitnas: data: Fashion-MNIST file")
    assert "apt-get install dataset-fashion-mnist" in out.splitlines()[-1] and "data.root" in out
    assert not (tmp_path / "results").exists()  # nothing ran


def test_paper_configs_plan_without_data_and_check_config_says_what_is_missing(tmp_path):
    files = [str(REPO / "config" / c) for c in ("imagenet_vitas.yaml", "imagenet_resnas.yaml", "imagenet_vitas_twins.yaml")]
    for f in files:
        r = run(["snakemake", "-n", "--profile", "slurm", "-d", str(tmp_path / "work"), "-s", str(REPO / "Snakefile"),
                 "--configfile", f], timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    r = run(["vitnas", "check-config", "--config", "config/config.yaml", files[0]])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no class folders in /" in r.stderr and "set data.root" in r.stderr
    r = run(["vitnas", "check-config", "--skip-data", "--config", "config/config.yaml", files[0]])
    assert r.returncode == 0 and "config OK" in r.stdout


@pytest.mark.parametrize("configs, budgets", [
    (["imagenet_vitas.yaml"], 3), (["imagenet_vitas.yaml", "imagenet_vitas_large.yaml"], 1),
    (["imagenet_resnas.yaml"], 3), (["imagenet_vitas_twins.yaml"], 2)])
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
    for rule in ("search", "random_search", "reference_seed", "ranking", "ablation_supernet",
                 "ablation_ranking", "ablation_search"):  # one process, one GPU
        assert gpus[rule] and gpus[rule].group(1) == "1", rule
    assert not gpus["prepare_data"] or gpus["prepare_data"].group(1) == "0"


def test_identity_prob_error_names_the_allowed_values(tmp_path):
    (tmp_path / "bad.yaml").write_text("supernet: {identity_prob: often}\n")
    r = run(["vitnas", "check-config", "--config", str(REPO / "config/config.yaml"), str(tmp_path / "bad.yaml")])
    assert r.returncode == 1
    assert "supernet.identity_prob = 'often' is not allowed; use a number in [0, 1] or 'budget'" in r.stderr


def test_fixtures_run_end_to_end_through_the_real_loaders(tmp_path):
    """The paper-scale paths on `vitnas make-fixtures` data: an ImageNet-style tree with a class
    subset and a corrupt JPEG, workers, the held-out split decoded once, COCO 2017 transfer."""
    r = run(["vitnas", "make-fixtures", "--out", str(tmp_path / "fx")])
    assert r.returncode == 0, r.stderr
    (tmp_path / "work").mkdir()
    work = workflow_copy(tmp_path / "work")
    (work / "roots.yaml").write_text(f"data: {{root: {tmp_path / 'fx/imagenet'}}}\n"
                                     f"transfer: {{root: {tmp_path / 'fx/coco'}}}\n")
    target = "results/fixtures/vit/seed0/transfer/evo-240K/coco_eval.json"
    r = run(["snakemake", "--cores", "2", "--configfile", str(REPO / "tests/config/tiny.yaml"),
             str(REPO / "tests/config/fixtures.yaml"), "roots.yaml", "--", target], cwd=work, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((work / target).read_text())
    assert set(result) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"} and result["steps"] == 2
    manifest = pd.read_csv(work / "results/fixtures/data/manifest.csv")
    assert manifest.groupby("split").size().to_dict() == {"search": 8, "test": 16, "train": 41}
    held_out = (work / "results/fixtures/data/held_out.txt").read_text().split()
    assert sorted(held_out) == sorted(manifest[manifest.split == "search"]["id"])
    logs = "".join(p.read_text() for p in (work / "results/fixtures").rglob("*.log"))
    corrupt = "skipped a corrupt image of the"
    assert corrupt in logs and "n00000000_0_corrupt.JPEG" in logs  # met in training or scoring
    history = pd.read_csv(work / "results/fixtures/vit/seed0/search/240K/history.csv")
    assert (history.eval_images == 8).all() and len(history) > 0


PARETO_RUN = """\
spaces:
  resnas: null
  twins: null
  vit: {family: vit, supernet: {per_budget: false}, search: {mode: pareto}}
ablation: {enabled: false}
"""


@needs_fmnist
def test_pareto_mode_end_to_end(tmp_path):
    """search.mode: pareto through the whole run (one space, two budgets, no ablation): each
    budget's pick retrained, transferred and in the tables, the front in the figures and the report."""
    work = workflow_copy(tmp_path)
    (work / "pareto.yaml").write_text(PARETO_RUN)
    cmd = ["snakemake", "--cores", "2", "--configfile", str(REPO / "tests/config/tiny.yaml"), str(work / "pareto.yaml")]
    r = run(cmd, cwd=work, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    check_pareto_run(work / "results/tiny/vit")
    report = run(cmd + ["--report", str(work / "report.html")], cwd=work, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (work / "report.html").read_text()
    assert "results/tiny/vit/figures/pareto_front.png" in page and "Pareto front of all of them" in page


def check_pareto_run(res):
    """The Pareto search's picks flowed: each budget's retrained model is its pick, in its window,
    the most accurate network the search evaluated there; the tables carry them."""
    from safetensors import safe_open

    from vitnas.arch import Arch
    from vitnas.claims import KNOWN_PARETO

    chain = res / "seed0"
    history = pd.read_csv(chain / "search/pareto/history.csv")
    front = pd.read_csv(chain / "search/pareto/front.csv")
    assert history["method"].eq("pareto").all() and 0 < len(front) <= len(history)
    models = pd.read_csv(res / "tables/models.csv").set_index("model")
    for budget, (lo, hi) in {"2M": (1.8e6, 2e6), "4M": (3.6e6, 4e6)}.items():
        best = json.loads((chain / f"search/{budget}/best.json").read_text())
        pick = Arch.load(chain / f"search/{budget}/best.json")
        assert best["search"]["method"] == "pareto" and lo <= best["search"]["macs"] <= hi
        inside = history[history["macs"].between(lo, hi)]
        assert best["search"]["accuracy"] == inside["accuracy"].max()
        assert pick.to_json() in {Arch.from_json(a).to_json() for a in inside[inside["accuracy"] == inside["accuracy"].max()].arch}
        metrics = json.loads((chain / f"retrain/evo-{budget}/metrics.json").read_text())
        assert metrics["arch"] == pick.to_dict() and metrics["macs"] == best["search"]["macs"]
        with safe_open(str(chain / f"retrain/evo-{budget}/model.safetensors"), "pt") as f:
            assert Arch.from_json(f.metadata()["arch"]) == pick
        assert models.loc[f"evo-{budget}", "MACs (M)"] == round(best["search"]["macs"] / 1e6, 2)
        assert models.loc[f"evo-{budget}", "window"] == f"[{lo / 1e6:g}M, {hi / 1e6:g}M]"
        # Its per-budget history: the in-window rows of the one search.
        assert len(pd.read_csv(chain / f"search/{budget}/history.csv")) == len(inside)
    claims = pd.read_csv(res / "tables/claims.csv")
    searched = claims[claims.claim == "searched beats the DeiT-style baseline at matched MACs"]
    assert sorted(searched.scope) == ["2M", "4M"]
    assert (claims.claim == KNOWN_PARETO).sum() == 2  # one row per budget's window on NAS-Bench-Macro
    assert len(pd.read_csv(res / "tables/detection.csv")) == 4
    for ext in ("png", "pdf"):
        assert (res / f"figures/pareto_front.{ext}").stat().st_size > 1000
