"""Ranking against the known answer (vitnas.known_answer): tau over known cases, the stratified
sample, BatchNorm recalibration, and the CI-sized run end to end on tiny synthetic CIFAR-10."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO
from test_cifar10 import write_batches
from vitnas import checks, claims, config, data, known_answer, results
from vitnas.errors import ConfigError
from vitnas.families import macro
from vitnas.families.macro.space import MacroSpace, from_key
from vitnas.search_quality import budget_windows
from vitnas.tabular import load_macro

TABLE = load_macro()


def test_scores_equal_to_the_truth_rank_perfectly_and_beat_flops():
    rows = known_answer.stratified_sample(TABLE.flops, 150, seed=0)
    wins = budget_windows(TABLE, ["55.4M"], 0.9)
    truth = TABLE.mean_acc[rows]
    right = known_answer.measure(truth, TABLE, rows, wins, resamples=100, seed=0)
    assert right["all"]["supernet"]["kendall_tau"] == pytest.approx(1.0)
    assert right["all"]["supernet"]["spearman_rho"] == pytest.approx(1.0)
    beat = right["all"]["supernet_minus_flops"]
    assert beat["difference"] > 0 and beat["ci"][0] > 0  # FLOPs alone ranks far from perfectly
    assert -1 < right["all"]["flops"]["kendall_tau"] < 1
    assert right["55.4M"]["supernet"]["kendall_tau"] == pytest.approx(1.0)
    assert right["55.4M"]["n"] == int(((TABLE.flops[rows] >= 0.9 * 55.4e6) & (TABLE.flops[rows] <= 55.4e6)).sum())
    wrong = known_answer.measure(-truth, TABLE, rows, wins, resamples=100, seed=0)
    assert wrong["all"]["supernet"]["kendall_tau"] == pytest.approx(-1.0)
    assert wrong["all"]["supernet_minus_flops"]["ci"][1] < 0


def test_the_ceiling_is_the_tau_between_the_benchmarks_own_trainings():
    rows = np.arange(len(TABLE.keys))
    c = known_answer.ceiling(TABLE, rows, resamples=100, seed=0)
    from scipy.stats import kendalltau

    assert c["kendall_tau"] == pytest.approx(kendalltau(TABLE.test_acc[:, 0], TABLE.test_acc[:, 1]).statistic)
    assert 0.3 < c["pairs_mean_tau"] < 0.95 and c["kendall_tau_ci"][0] < c["kendall_tau"] < c["kendall_tau_ci"][1]


def test_stratified_sample_takes_each_flops_decile_alike_and_nests():
    small, large = (known_answer.stratified_sample(TABLE.flops, n, seed=3) for n in (100, 1000))
    assert len(small) == 100 and len(large) == 1000 and len(set(large)) == 1000
    assert set(small) <= set(large)
    edges = np.quantile(TABLE.flops, np.linspace(0, 1, 11))
    counts = np.histogram(TABLE.flops[large], edges)[0]
    assert counts.min() >= 90 and counts.max() <= 110
    assert len(known_answer.stratified_sample(TABLE.flops, None, seed=0)) == len(TABLE.keys)


def test_bn_recalibration_replaces_the_running_statistics_deterministically():
    space = MacroSpace()
    torch.manual_seed(0)
    net = macro.build_supernet(space, {"drop_path": 0.0})
    arch = space.canonical(from_key("12021101"))
    batches = [torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(i)) * 2 + 1 for i in range(3)]
    stats = lambda m: torch.cat([b.flatten() for n, b in m.named_buffers() if "running" in n])
    before = stats(macro.export(net, arch))
    first, second = macro.export(net, arch), macro.export(net, arch)
    known_answer.recalibrate_bn(first, batches)
    known_answer.recalibrate_bn(second, batches)
    assert not torch.allclose(stats(first), before) and torch.equal(stats(first), stats(second))
    assert not first.training
    stem_bn = first.stem[1]  # cumulative average: the mean of the three batches' channel means
    with torch.no_grad():
        means = torch.stack([first.stem[0](x).mean((0, 2, 3)) for x in batches]).mean(0)
    assert torch.allclose(stem_bn.running_mean, means, atol=1e-5)
    untouched = macro.export(net, arch)
    known_answer.recalibrate_bn(untouched, [])
    assert torch.equal(stats(untouched), before)


def test_unknown_or_misordered_arms_stop_with_the_fix():
    cfg = config.for_space(config.load(str(REPO / "config/config.yaml"), str(REPO / "config/nasbench_macro.yaml")),
                           "macro")
    assert known_answer.arms(cfg) == ["full", "no_shifting", "no_budget_prob"]
    for bad in (["full", "no_cyclic"], ["no_shifting", "full"]):
        with pytest.raises(ConfigError, match="known_answer.arms: .* full first"):
            known_answer.arms(cfg | {"known_answer": cfg["known_answer"] | {"arms": bad}})


def _experiment(extra: dict | None = None) -> dict:
    files = [str(REPO / "config/config.yaml"), str(REPO / "config/nasbench_macro.yaml")]
    return config.load(*files, json.dumps(extra)) if extra else config.load(*files)


def test_known_answer_space_is_checked_with_the_fix():
    checks.check_known_answer(_experiment())  # config/nasbench_macro.yaml: the macro space
    with pytest.raises(ConfigError, match=r"known_answer.space = 'nope' is not a space of this experiment \(macro\)"):
        checks.check_known_answer(_experiment({"known_answer": {"space": "nope"}}))
    vit_too = {"spaces": {"vit": {"family": "vit"}}, "known_answer": {"space": "vit"}}
    with pytest.raises(ConfigError, match="known_answer.space = 'vit' is a vit space, but .* for the macro family"):
        checks.check_known_answer(_experiment(vit_too))
    with pytest.raises(ConfigError, match="known_answer.arms"):
        checks.check_known_answer(_experiment({"known_answer": {"arms": ["no_shifting"]}}))
    checks.check_known_answer(_experiment({"known_answer": {"space": None, "arms": ["no_shifting"]}}))  # no study


def test_each_arm_caches_by_its_training_config_not_by_what_is_scored(tmp_path):
    cfg = config.for_space(_experiment(), "macro")
    cache = known_answer.arm_cache(cfg, "full", tmp_path)
    assert cache.parent.parent == tmp_path and cache.name == "full"
    more = cfg | {"known_answer": cfg["known_answer"] | {"networks": 6561, "search_seeds": 30}}
    assert known_answer.arm_cache(more, "full", tmp_path) == cache  # more networks or seeds: same supernet
    assert known_answer.scores_cache(more, "full", tmp_path) == known_answer.scores_cache(cfg, "full", tmp_path)
    longer = config.validate(cfg | {"supernet": cfg["supernet"] | {"epochs": 3}})
    assert known_answer.arm_cache(longer, "full", tmp_path) != cache  # retrained, never a stale supernet
    fewer = cfg | {"known_answer": cfg["known_answer"] | {"eval_images": 100}}
    assert known_answer.scores_cache(fewer, "full", tmp_path) != known_answer.scores_cache(cfg, "full", tmp_path)
    assert known_answer.arm_cache(cfg, "no_shifting", tmp_path) != cache


@pytest.mark.slow
def test_the_pipeline_plans_the_study_and_its_claims(tmp_path):
    """`snakemake --configfile config/nasbench_macro.yaml` runs rule known_answer, whose outputs are
    results.py's, and the macro space's figures (its claims table) read its claims."""
    import subprocess

    r = subprocess.run(["snakemake", "-n", "-p", "-d", str(tmp_path), "-s", str(REPO / "Snakefile"),
                        "--configfile", str(REPO / "config/config.yaml"), str(REPO / "config/nasbench_macro.yaml")],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    R = results.experiment_dir("nasbench_macro")
    job = r.stdout.split("rule known_answer:")[1].split("\n[")[0]
    outputs = job.split("output: ")[1].split("\n")[0].split(", ")
    assert set(outputs) == {results.known_answer_file(R, "macro", f) for f in results.KNOWN_ANSWER_FILES}
    figures = r.stdout.split("rule figures:")[1].split("\n[")[0]
    assert results.known_answer_file(R, "macro", "claims.csv") in figures.split("input: ")[1].split("\n")[0]
    assert "vitnas known-answer" in r.stdout
    default = subprocess.run(["snakemake", "-n", "-d", str(tmp_path / "d"), "-s", str(REPO / "Snakefile"),
                              "--configfile", str(REPO / "config/config.yaml")],
                             capture_output=True, text=True, timeout=180)
    assert default.returncode == 0 and "known_answer" not in default.stdout  # the default runs no study


def test_known_claims_join_the_space_claims_table(tmp_path):
    """The figures stage appends the study's claims (results.load_known_claims) in the table's columns."""
    R = str(tmp_path)
    rows = pd.DataFrame([{c: None for c in claims.COLUMNS} | {"claim": "the supernet ranks networks better than "
                          "FLOPs alone", "n": 150, "difference": -0.6, "verdict": "not reproduced"}])
    path = Path(results.known_answer_file(R, "macro", "claims.csv"))
    path.parent.mkdir(parents=True)
    rows[list(reversed(claims.COLUMNS))].to_csv(path, index=False)  # any column order
    got = results.load_known_claims(R, "macro")
    assert got[claims.COLUMNS].iloc[0]["difference"] == -0.6
    path.unlink()
    with pytest.raises(FileNotFoundError, match="made by the 'known_answer' rule"):
        results.load_known_claims(R, "macro")


@pytest.mark.slow
def test_ci_sized_run_end_to_end(tmp_path):
    """Two arms' supernets a few steps each on 100 synthetic CIFAR-10 images, 20 networks scored,
    every search on the full arm's scores: the outputs hold the values they must."""
    write_batches(tmp_path / "cifar")
    tiny = {"data": {"root": str(tmp_path / "cifar"), "search_per_class": 2},
            "spaces": {"macro": {"search": {"budgets": ["45.5M", "65.4M"]}}},
            "supernet": {"max_steps": 3, "batch_size": 8, "warmup_steps": 1, "log_every": 1},
            "search": {"population": 3, "generations": 1, "parents": 2, "mutations": 1, "crossovers": 1},
            "known_answer": {"networks": 20, "eval_images": 20, "bn_batches": 1, "bn_batch_size": 8,
                             "arms": ["full", "no_shifting"], "search_seeds": 1, "bootstrap": 100}}
    (tmp_path / "tiny.yaml").write_text(json.dumps(tiny))
    cfg = config.for_space(config.load(str(REPO / "config/config.yaml"), str(REPO / "config/nasbench_macro.yaml"),
                                       str(tmp_path / "tiny.yaml")), "macro")
    data.prepare(cfg, tmp_path / "data")
    out = tmp_path / "ka"
    result = known_answer.run(cfg, tmp_path / "data", out, tmp_path / "ckpt")

    assert result["networks"] == 20
    full = result["arms"]["full"]
    assert full["held_out_images"] == 20 and full["bn_images"] == 8
    assert full["distinct_networks"] <= 20 and result["arms"]["no_shifting"]["distinct_networks"] == 20
    tau = full["ranking"]["all"]["supernet"]["kendall_tau"]  # NaN if 3 steps leave every score equal
    assert math.isnan(tau) or -1 <= tau <= 1
    assert full["ranking"]["all"]["flops"]["kendall_tau"] > 0  # the benchmark's own: bigger is better
    scores = pd.read_csv(out / "scores.csv", dtype={"key": str})
    assert len(scores) == 20 and set(scores.columns) >= {"score_full", "score_no_shifting", "mean_acc", "flops"}
    assert scores["score_full"].between(0, 100).all()
    assert all(s * 20 / 100 == pytest.approx(round(s * 20 / 100)) for s in scores["score_full"])  # k of 20 right
    runs = pd.read_csv(out / "search.csv")
    assert set(runs["strategy"]) == {"evolution", "random", "pareto"} and len(runs) == 3 * 2
    per_budget = runs[runs["strategy"] != "pareto"]  # a Pareto run of 10 may miss a window (NaN)
    assert per_budget["regret"].notna().all() and runs["regret"].notna().sum() >= 4
    assert (runs["regret"].dropna() >= 0).all() and runs["percentile"].dropna().between(0, 100).all()
    switches = pd.read_csv(out / "switches.csv")
    assert list(switches["arm"]) == ["full", "no_shifting"] and math.isnan(switches["minus_full"][0])
    assert switches["minus_full"][1] == pytest.approx(switches["kendall_tau"][1] - switches["kendall_tau"][0],
                                                      nan_ok=True)
    table = pd.read_csv(out / "claims.csv")
    assert list(table.columns) == claims.COLUMNS and len(table) == 2
    assert set(table["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
    assert table["n"][1] == 2  # evolution's picks: windows x seeds
    cache = known_answer.arm_cache(cfg, "full", tmp_path / "ckpt")
    assert (cache / "supernet.safetensors").is_file() and (out / "full" / "train_log.csv").is_file()
    assert known_answer.arm_cache(cfg, "no_shifting", tmp_path / "ckpt") != cache  # each arm its own weights
    assert json.loads((out / "ranking.json").read_text())

    again = known_answer.run(cfg, tmp_path / "data", out, tmp_path / "ckpt")  # reuses supernets and scores
    assert again["seconds"]["full"]["train"] == 0.0
    same = lambda r: json.dumps(r["arms"]["full"]["ranking"], sort_keys=True)  # NaN-safe equality
    assert same(again) == same(result)
