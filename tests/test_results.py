"""The results layout (vitnas.results): the paths users and tests rely on, the rules declaring
exactly those, and loaders that name what is missing and the rule that writes it."""
import json
import re

import pandas as pd
import pytest

from conftest import REPO, run
from vitnas import results
from vitnas.errors import ResultError, VitnasError

R = "results/default"
W = {"space": "{space}", "seed": "{seed}"}  # Snakemake's wildcards, as the rules pass them

# Every artefact's path, spelt out as users, the README and the tests know it.
LAYOUT = {
    "results/default": results.experiment_dir("default"),
    "checkpoints/default/{space}/supernet": results.checkpoint_dir("default", "{space}", "supernet"),
    "results/default/data": results.data_dir(R),
    "results/default/data/search.npz": results.data_split(R, "search"),
    "results/default/data/manifest.csv": results.data_manifest(R),
    "results/default/data/held_out.txt": results.held_out_list(R),
    "results/default/detection": results.detection_dir(R),
    "results/default/{space}/baselines/deit-{budget}.json": results.baseline_arch(R, "{space}", "{budget}"),
    "results/default/{space}/reference/standalone_seed{refseed}.csv": results.reference_part(R, "{space}", "{refseed}"),
    "results/default/{space}/reference/standalone.csv": results.reference_table(R, "{space}"),
    "results/default/{space}/seed{seed}": results.chain_dir(R, **W),
    "results/default/{space}/seed{seed}/supernet/{supernet}/supernet.safetensors":
        results.supernet_weights(R, **W, supernet="{supernet}"),
    "results/default/{space}/seed{seed}/supernet/{supernet}/train_log.csv":
        results.supernet_train_log(R, **W, supernet="{supernet}"),
    "results/default/{space}/seed{seed}/supernet/{supernet}/health.json":
        results.supernet_health(R, **W, supernet="{supernet}"),
    "results/default/{space}/seed{seed}/supernet/{supernet}/ranking.json":
        results.supernet_ranking(R, **W, supernet="{supernet}"),
    "results/default/{space}/seed{seed}/supernet/{supernet}/identity_prob.json":
        results.supernet_identity_prob(R, **W, supernet="{supernet}"),
    "results/default/{space}/seed{seed}/search/{budget}/best.json": results.search_best(R, **W, budget="{budget}"),
    "results/default/{space}/seed{seed}/search/{budget}/history.csv": results.search_history(R, **W, budget="{budget}"),
    "results/default/{space}/seed{seed}/search/{budget}/random_history.csv":
        results.random_history(R, **W, budget="{budget}"),
    "results/default/{space}/seed{seed}/search/{budget}/latency_versus_macs.json":
        results.latency_vs_macs(R, **W, budget="{budget}"),
    "results/default/{space}/seed{seed}/search/{budget}/latency_history.csv":
        results.latency_vs_macs_history(R, **W, budget="{budget}"),
    "results/default/{space}/seed{seed}/retrain/{model}/model.safetensors":
        results.retrain_weights(R, **W, model="{model}"),
    "results/default/{space}/seed{seed}/retrain/{model}/metrics.json": results.retrain_metrics(R, **W, model="{model}"),
    "results/default/{space}/seed{seed}/retrain/{model}/train_log.csv":
        results.retrain_train_log(R, **W, model="{model}"),
    "results/default/{space}/seed{seed}/transfer/{model}/coco_eval.json": results.coco_eval(R, **W, model="{model}"),
    "results/default/{space}/ablation/{variant}/supernet.safetensors":
        results.ablation_weights(R, "{space}", "{variant}"),
    "results/default/{space}/ablation/{variant}/train_log.csv": results.ablation_train_log(R, "{space}", "{variant}"),
    "results/default/{space}/ablation/{variant}/health.json": results.ablation_health(R, "{space}", "{variant}"),
    "results/default/{space}/ablation/{variant}/ranking.json": results.ablation_ranking(R, "{space}", "{variant}"),
    "results/default/{space}/ablation/{variant}/search.json": results.ablation_search(R, "{space}", "{variant}"),
    "results/default/{space}/tables/{table}.{ext}": results.table(R, "{table}", "{ext}", "{space}"),
    "results/default/{space}/figures/pareto.{ext}": results.figure(R, "pareto", "{ext}", "{space}"),
    "results/default/{space}/replicates/tables/claims.html": results.table(R, "claims", "html", "{space}", True),
    "results/default/{space}/replicates/figures/ablation_tau.{ext}":
        results.figure(R, "ablation_tau", "{ext}", "{space}", replicates=True),
    "results/default/tables/families.csv": results.table(R, "families", "csv"),
    "results/default/figures/families_{x}.{ext}": results.figure(R, "families_{x}", "{ext}"),
    "results/default/search_quality/runs.csv": results.search_quality_runs(R),
    "results/default/search_quality/curves.csv": results.search_quality_curves(R),
    "results/default/search_quality/summary.md": results.search_quality_summary(R, "md"),
    "results/default/search_quality/regret_vs_evaluations.png": results.search_quality_figure(R, "png"),
    "results/default/logs/prepare_data.log": results.log(R, "prepare_data"),
    "results/default/{space}/logs/design_baseline_{budget}.log": results.log(R, "design_baseline_{budget}", "{space}"),
    "results/default/{space}/logs/seed{seed}/retrain_{model}.log": results.log(R, "retrain_{model}", **W),
    "results/default/{space}/benchmarks/ablation_supernet_{variant}.tsv":
        results.benchmark(R, "ablation_supernet_{variant}", "{space}"),
    "results/default/{space}/benchmarks/seed{seed}/search_{budget}.tsv": results.benchmark(R, "search_{budget}", **W),
    "results/default/benchmarks/search_quality.tsv": results.benchmark(R, "search_quality"),
}


@pytest.mark.parametrize("expected", sorted(LAYOUT))
def test_layout_is_the_published_one(expected):
    assert LAYOUT[expected] == expected


def test_concrete_values_give_concrete_paths():
    assert results.supernet_health("results/x", "vit", 3, "shared") == "results/x/vit/seed3/supernet/shared/health.json"
    assert results.ablation_records("r", "vit", ["full", "autoformer"]) == [
        "r/vit/ablation/full/health.json", "r/vit/ablation/full/ranking.json", "r/vit/ablation/full/search.json",
        "r/vit/ablation/autoformer/health.json", "r/vit/ablation/autoformer/ranking.json",
        "r/vit/ablation/autoformer/search.json"]
    chain = results.chain_records("r", "vit", 0, ["2M"], ["shared"], ["evo-2M"])
    assert chain == {"health": ["r/vit/seed0/supernet/shared/health.json"],
                     "ranking": ["r/vit/seed0/supernet/shared/ranking.json"],
                     "evolution": ["r/vit/seed0/search/2M/history.csv"],
                     "random": ["r/vit/seed0/search/2M/random_history.csv"],
                     "metrics": ["r/vit/seed0/retrain/evo-2M/metrics.json"],
                     "inherited": ["r/vit/seed0/export/2M/metrics.json"],
                     "detection": ["r/vit/seed0/transfer/evo-2M/coco_eval.json"], "latency_vs_macs": []}
    # ft models (retrain.compare_finetune) are retrained, never transferred
    chain = results.chain_records("r", "vit", 0, ["2M"], ["shared"], ["evo-2M", "ft-2M", "deit-2M"])
    assert chain["metrics"] == ["r/vit/seed0/retrain/evo-2M/metrics.json", "r/vit/seed0/retrain/ft-2M/metrics.json",
                                "r/vit/seed0/retrain/deit-2M/metrics.json"]
    assert chain["detection"] == ["r/vit/seed0/transfer/evo-2M/coco_eval.json",
                                  "r/vit/seed0/transfer/deit-2M/coco_eval.json"]
    listed = results.chain_records("r", "resnas", 1, ["2M", "4M"], ["shared"], [], ["4M"])["latency_vs_macs"]
    assert listed == ["r/resnas/seed1/search/4M/latency_versus_macs.json"]  # search.latency_vs_macs only


# ---------------------------------------------------------------------------------------- the rules

def _tables(names, exts, space=None, replicates=False):
    return {results.table(R, n, e, space, replicates) for n in names for e in exts}


def _figures(names, exts, space=None, replicates=False):
    return {results.figure(R, n, e, space, replicates) for n in names for e in exts}


FORMATS = ["png", "pdf"]
TABLE_EXTS = ["csv", "md", "tex", "html"]
# What each rule declares, from the results functions, given a job's wildcards (w).
DECLARED = {
    "prepare_data": lambda w: {results.data_split(R, s) for s in ("train", "search", "test")}
    | {results.data_manifest(R), results.held_out_list(R)},
    "compose_detection": lambda w: {results.detection_dir(R)},
    "design_baseline": lambda w: {results.baseline_arch(R, w["space"], w["budget"])},
    "reference_seed": lambda w: {results.reference_part(R, w["space"], w["refseed"])},
    "reference": lambda w: {results.reference_table(R, w["space"])},
    "train_supernet": lambda w: {f(R, w["space"], w["seed"], w["supernet"]) for f in (
        results.supernet_weights, results.supernet_train_log, results.supernet_health)},
    "ranking": lambda w: {results.supernet_ranking(R, w["space"], w["seed"], w["supernet"])},
    "search": lambda w: {results.search_best(R, w["space"], w["seed"], w["budget"]),
                         results.search_history(R, w["space"], w["seed"], w["budget"])},
    "random_search": lambda w: {results.random_history(R, w["space"], w["seed"], w["budget"])},
    "latency_vs_macs": lambda w: {f(R, w["space"], w["seed"], w["budget"]) for f in (
        results.latency_vs_macs, results.latency_vs_macs_history)},
    "retrain": lambda w: {f(R, w["space"], w["seed"], w["model"]) for f in (
        results.retrain_weights, results.retrain_onnx, results.retrain_metrics, results.retrain_train_log)},
    "export": lambda w: {f(R, w["space"], w["seed"], w["budget"]) for f in (
        results.export_weights, results.export_onnx, results.export_metrics)},
    "transfer": lambda w: {results.coco_eval(R, w["space"], w["seed"], w["model"])},
    "ablation_supernet": lambda w: {f(R, w["space"], w["variant"]) for f in (
        results.ablation_weights, results.ablation_train_log, results.ablation_health)},
    "ablation_ranking": lambda w: {results.ablation_ranking(R, w["space"], w["variant"])},
    "ablation_search": lambda w: {results.ablation_search(R, w["space"], w["variant"])},
    "figures": lambda w: _tables(["models", "search_vs_random", "latency_vs_macs", "detection", "ranking", "claims",
                                  "ablation"],
                                 TABLE_EXTS, w["space"])
    | _figures(["pareto", "search_progress", "ablation_tau"], FORMATS, w["space"]),
    "replicates_report": lambda w: _tables(["replicates", "claims", "ablation"], TABLE_EXTS, w["space"], True)
    | _figures(["ablation_tau"], FORMATS, w["space"], True),
    "families": lambda w: _tables(["families"], TABLE_EXTS) | _figures(
        ["families_macs", "families_throughput", "families_latency", "families_detection"], FORMATS),
    "published": lambda w: _tables(["published"], TABLE_EXTS) | {results.table(R, "published_latency", "json")}
    | _figures(["published_latency"], FORMATS),
    "search_quality": lambda w: _tables(["search_quality"], TABLE_EXTS)
    | {results.search_quality_runs(R), results.search_quality_curves(R)}
    | {results.search_quality_summary(R, e) for e in ("csv", "md")}
    | {results.search_quality_figure(R, e) for e in FORMATS},
}


def planned_jobs(tmp_path) -> list[tuple[str, dict, set, str]]:
    """(rule, wildcards, outputs, log) of every job `snakemake all replicates` plans, with the ablation."""
    (tmp_path / "more.yaml").write_text("ablation: {enabled: true}\nreplicates: 2\n")
    r = run(["snakemake", "all", "replicates", "-n", "-d", str(tmp_path), "-s", str(REPO / "Snakefile"),
             "--configfile", str(REPO / "config/config.yaml"), str(tmp_path / "more.yaml")], timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = []
    for block in re.split(r"\n\[[^\]\n]+\]\n", r.stdout + r.stderr)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        fields = dict(re.findall(r"^    (output|log|wildcards): (.*)$", block, re.M))
        wildcards = dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if kv)
        outputs = set(fields["output"].split(", ")) if "output" in fields else set()
        jobs.append((rule, wildcards, outputs, fields.get("log", "")))
    return jobs


@pytest.mark.slow
def test_every_rule_declares_the_results_paths(tmp_path):
    jobs = planned_jobs(tmp_path)
    assert {rule for rule, *_ in jobs} == set(DECLARED) | {"all", "replicates"}
    for rule, wildcards, outputs, log in jobs:
        if rule in ("all", "replicates"):
            continue
        assert outputs == DECLARED[rule](wildcards), rule
        # The job's log is named after the rule and its wildcards: retrain_evo-2M, reference_seed1, ...
        job = rule + "".join(f"_{wildcards[k]}" for k in ("budget", "model", "supernet", "variant") if k in wildcards)
        job += wildcards.get("refseed", "")
        assert log == results.log(R, job, wildcards.get("space"), wildcards.get("seed")), rule


# ---------------------------------------------------------------------------------------- loaders

def _write(path, record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


METRICS = {"model": "evo-2M", "kind": "evo", "budget": "2M", "top1": 80.0, "params": 1e6, "macs": 1.9e6,
           "throughput": 100.0, "throughput_device": "cpu", "latency_torch_ms": 0.5, "latency_ort_ms": 0.25,
           "arch": {"patch": 4}}
COCO = {"model": "evo-2M", "detector": "retinanet", "steps": 10, "AP": 1.0, "AP50": 2.0, "AP75": 1.0,
        "APs": -1.0, "APm": 1.0, "APl": None}


def test_loaders_read_what_the_rules_wrote(tmp_path):
    _write(tmp_path / "vit/seed0/retrain/evo-2M/metrics.json", METRICS)
    _write(tmp_path / "vit/seed0/transfer/evo-2M/coco_eval.json", COCO)
    assert results.load_metrics_record(tmp_path, "vit", 0, "evo-2M") == METRICS  # whole, arch included
    metrics = results.load_metrics(tmp_path, "vit", 0, ["evo-2M"])
    assert list(metrics.columns) == results.METRICS_KEYS + ["init"] + results.TRAINING_KEYS
    assert metrics.loc[0, "top1"] == 80.0
    assert metrics.loc[0, "init"] == "scratch"  # a record from before retrain.init
    assert metrics[results.TRAINING_KEYS].isna().all(axis=None)  # and from before the training keys
    detection = results.load_detection(tmp_path, "vit", 0, ["evo-2M"])
    assert pd.isna(detection.loc[0, "APs"]) and pd.isna(detection.loc[0, "APl"])  # -1 and null: no objects


@pytest.mark.parametrize("path, record, key, rule, load", [
    ("vit/seed0/retrain/evo-2M/metrics.json", METRICS, "top1", "retrain",
     lambda root: results.load_metrics(root, "vit", 0, ["evo-2M"])),
    ("vit/seed0/transfer/evo-2M/coco_eval.json", COCO, "AP75", "transfer",
     lambda root: results.load_detection_record(root, "vit", 0, "evo-2M")),
    ("vit/ablation/full/search.json", {"budget": "2M", "window": [1, 2], "accuracy": 70.0, "macs": 1.0}, "window",
     "ablation_search", lambda root: results.read_record(results.ablation_search(root, "vit", "full"),
                                                         "ablation_search", results.ABLATION_SEARCH_KEYS)),
])
def test_missing_key_names_it_and_the_rule_in_one_line(tmp_path, path, record, key, rule, load):
    _write(tmp_path / path, {k: v for k, v in record.items() if k != key})
    with pytest.raises(ResultError) as e:
        load(tmp_path)
    message = str(e.value)
    assert message == (f"{tmp_path / path} lacks {key}; it is made by the '{rule}' rule, run that again "
                       f"(snakemake --forcerun {rule})")
    assert isinstance(e.value, VitnasError) and "\n" not in message


def test_missing_history_column_and_ranking_scope_key(tmp_path):
    folder = tmp_path / "vit/seed0/search/2M"
    folder.mkdir(parents=True)
    columns = [c for c in results.HISTORY_COLUMNS if c != "accuracy_se"]
    pd.DataFrame([[1] * len(columns)], columns=columns).to_csv(folder / "history.csv", index=False)
    with pytest.raises(ResultError, match=r"history.csv lacks accuracy_se; it is made by the 'search' rule"):
        results.load_histories(tmp_path, "vit", 0, ["2M"])
    scope = {"kendall_tau": 0.5, "kendall_tau_ci": None, "spearman_rho": 0.5, "spearman_rho_ci": None, "n_archs": 3}
    _write(tmp_path / "vit/seed0/supernet/2M/health.json", {"budget": "2M", "usage": {}, "warnings": []})
    _write(tmp_path / "vit/seed0/supernet/2M/ranking.json", {"scopes": {"all": scope}, "archs": []})
    with pytest.raises(ResultError, match=r"ranking.json lacks ceiling; it is made by the 'ranking' rule"):
        results.load_supernets(tmp_path, "vit", 0, ["2M"])


def test_missing_file_names_the_rule(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"vit/seed1/transfer/deit-2M/coco_eval.json is missing; it is made "
                                                r"by the 'transfer' rule, run that first"):
        results.load_detection(tmp_path, "vit", 1, ["deit-2M"])
