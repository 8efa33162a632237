"""`vitnas plan`: the cost of a run before it runs, against FLOPs counted by hand."""
import json
import math

import pytest

from conftest import REPO
from vitnas import cli, config
from vitnas.errors import ConfigError
from vitnas.plan import Job, SpacePlan, _retrain, device_rate, jobs, per_rule, plan

DEFAULT = str(REPO / "config/config.yaml")
PAPER = {  # each paper config, merged over the default as Snakemake merges it
    "imagenet_vitas": ["imagenet_vitas.yaml"],
    "imagenet_vitas_large": ["imagenet_vitas.yaml", "imagenet_vitas_large.yaml"],
    "imagenet_resnas": ["imagenet_resnas.yaml"],
    "imagenet_vitas_twins": ["imagenet_vitas_twins.yaml"],
    "cifar10": ["cifar10.yaml"],
}
# The search rule by hand: evaluations (population + generations x (mutations + crossovers)) x
# held-out images x 2 FLOPs per MAC x the budget, summed over the budgets, in PFLOPs.
SEARCH_PFLOPS = {
    "imagenet_vitas": (50 + 40 * 50) * 25_000 * 2 * (1.0e9 + 1.3e9 + 1.4e9) / 1e15,  # 379.25
    "imagenet_vitas_large": (50 + 40 * 50) * 25_000 * 2 * 3.0e9 / 1e15,  # 307.5
    "imagenet_resnas": (500 + 19 * 150) * 25_000 * 2 * (1.7944e9 + 2.9e9 + 4.6e9) / 1e15,  # 1556.812
    "imagenet_vitas_twins": (50 + 40 * 50) * 25_000 * 2 * (2.9274e9 + 8.5626e9) / 1e15,  # 1177.725
    # 12 + 3 x 12 = 48 evaluations; vit 2.5M and resnas 4.5M on the 2,000 held-out images, twins 4.5M on 1,000
    "cifar10": 48 * 2 * (2000 * 2.5e6 + 2000 * 4.5e6 + 1000 * 4.5e6) / 1e15,
}
# ViTAS's DeiT-style baseline of 2M in the default vit space (28 px, 10 classes): patch 4 (49
# patches + the class token = 50 tokens), width 24, 4 blocks of 2 heads, QKV 24, MLP 96.
# Patch embedding 49 x 16 x 24; per block QKV 50 x 24 x 72, QK^T and A.V 2 x 50 x 50 x 24,
# projection 50 x 24 x 24, MLP 2 x 50 x 24 x 96; the head 24 x 10.
DEIT_2M_MACS = 49 * 16 * 24 + 4 * (50 * 24 * 72 + 2 * 50 * 50 * 24 + 50 * 24 * 24 + 2 * 50 * 24 * 96) + 24 * 10


def one(planned, rule, space=None, wildcard=None):
    [job] = [j for j in planned if j.rule == rule and j.space in (space, None) and
             (wildcard is None or j.wildcard == wildcard)]
    return job


@pytest.fixture(scope="module")
def default_plan():
    return plan(config.load(DEFAULT))


def test_retrain_flops_by_hand(default_plan):
    planned, sizes = default_plan
    assert sizes["sizes"] == {"train": 58_000, "search": 2_000, "test": 10_000}
    assert DEIT_2M_MACS == 1_881_456
    job = one(planned, "retrain", "vit", "deit-2M")
    images = math.ceil(0.5 * (58_000 // 128)) * 128  # retrain.epochs 0.5 of 453 steps: 227 of 128
    assert job.train_flops == 2 * 3 * images * DEIT_2M_MACS
    # the test split; the ONNX check (2 + 3 images) and 3 + 20 calls at batch 1 and at batch 64,
    # each in torch and onnxruntime
    assert job.eval_flops == 2 * (10_000 + 2 * (5 + 23 * (1 + 64))) * DEIT_2M_MACS
    assert job.read_bytes == (images + 10_000) * 784
    evo = one(planned, "retrain", "vit", "evo-2M")  # the evolved network: its budget, the upper bound
    assert evo.train_flops == 2 * 3 * images * 2e6


def test_default_job_list(default_plan):
    planned, _ = default_plan
    counts = per_rule(planned, 1e12).set_index("rule")["jobs"].to_dict()
    # 3 spaces of one budget each; 1 reference seed; the ablation is off in the default run;
    # resnas's 4M pick against a latency search (search.latency_vs_macs)
    assert counts == {"prepare_data": 1, "compose_detection": 1, "reference_seed": 3, "train_supernet": 3,
                      "ranking": 3, "search": 3, "random_search": 3, "latency_vs_macs": 1, "design_baseline": 3,
                      "retrain": 6, "export": 3, "transfer": 6, "total": 36}
    assert {j.wildcard for j in planned if j.rule == "train_supernet"} == {"2M", "shared", "4M"}
    replicated = jobs(config.load(DEFAULT), replicates=True)
    assert sum(j.rule == "train_supernet" for j in replicated) == 9  # 3 seeds
    # the arms: vit 10, resnas 4, twins 4
    assert sum(j.rule == "ablation_supernet" for j in replicated) == 18


def test_fine_tuned_models_in_the_replicates_plan_only():
    """retrain.compare_finetune (on in config/config.yaml): one ft retrain per space, budget and
    replicate seed, fine-tune-long, without a transfer job; none in the default run."""
    cfg = config.load(DEFAULT)
    replicated = jobs(cfg, replicates=True)
    ft = sorted((j.space, j.seed, j.wildcard) for j in replicated if j.wildcard.startswith("ft-"))
    assert ft == sorted((space, seed, f"ft-{budget}") for space, budget in (("vit", "2M"), ("resnas", "4M"),
                                                                           ("twins", "4M")) for seed in (0, 1, 2))
    assert {j.rule for j in replicated if j.wildcard.startswith("ft-")} == {"retrain"}
    assert not [j for j in jobs(cfg) if j.wildcard.startswith("ft-")]
    p = SpacePlan(config.for_space(cfg, "vit"), {"train": 58_000, "search": 2_000, "test": 10_000})
    steps = math.ceil(0.3 * (58_000 // 128))  # finetune.epochs 0.3 of 453 steps of 128
    assert _retrain(p, Job("retrain", "vit", 0, "ft-2M")).train_flops == 2 * 3 * steps * 128 * 2e6
    assert _retrain(p, Job("retrain", "vit", 0, "evo-2M")).train_flops == 2 * 3 * 227 * 128 * 2e6


def test_supernet_flops_by_hand():
    """A space of one network (every choice single, no identities): each step trains it."""
    one_net = {"patch_sizes": [4], "embed_dims": [24], "max_layers": 4, "min_depth": 4, "heads": [2],
               "qkv_dims": [24], "mlp_dims": [96]}
    cfg = config.load(DEFAULT, json.dumps({
        "spaces": {"resnas": None, "twins": None, "vit": one_net},
        "supernet": {"identity_prob": 0.0, "eval_images": 500, "health_random": 3},
        "search": {"budgets": ["1.881456M"]}}))
    planned, _ = plan(cfg, samples=20)
    job = one(planned, "train_supernet", "vit", "1.881456M")
    images = math.ceil(1.5 * (58_000 // 128)) * 128  # supernet.epochs 1.5: 680 steps of 128
    assert job.train_flops == 2 * 3 * images * DEIT_2M_MACS
    # health: the smallest, the largest and 3 random networks (all the same one) on 500 images
    assert job.eval_flops == pytest.approx(2 * 500 * 5 * DEIT_2M_MACS)


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER)
def test_plan_of_each_paper_config(name, capsys):
    files = [DEFAULT] + [str(REPO / "config" / f) for f in PAPER[name]]
    assert cli.main(["plan", "--config", *files, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["experiment"] == name
    rules = {r["rule"]: r for r in out["rules"]}
    assert rules["search"]["eval_pflops"] == pytest.approx(SEARCH_PFLOPS[name])
    total = rules["total"]
    assert total["train_pflops"] > 0 and total["hours"] > 0 and total["read_gb"] > 0
    # h100 at MFU 0.4: hours = FLOPs / (989e12 x 0.4) / 3600
    flops = (total["train_pflops"] + total["eval_pflops"]) * 1e15
    assert total["hours"] == pytest.approx(flops / (989e12 * 0.4) / 3600)


def test_retrain_of_a_paper_config_by_hand(capsys):
    files = [DEFAULT, str(REPO / "config/imagenet_vitas.yaml")]
    assert cli.main(["plan", "--config", *files, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    [job] = [j for j in out["jobs"] if j["rule"] == "retrain" and j["wildcard"] == "evo-1.3G"]
    # 300 epochs of 1,256,167 // 1024 = 1,226 steps of 1024 images (ImageNet train less the 25,000 held out)
    assert job["train_flops"] == pytest.approx(2 * 3 * 300 * 1226 * 1024 * 1.3e9)
    assert job["read_bytes"] == pytest.approx((300 * 1226 * 1024 + 50_000) * 115_000)


def test_printed_table_and_cpu_hours(capsys):
    assert cli.main(["plan", "--config", DEFAULT, "--cpu-gflops", "10"]) == 0
    out = capsys.readouterr().out
    assert "CPU at 10 GFLOP/s" in out and "CPU-hours" in out
    total = [line for line in out.splitlines() if line.startswith("| total")]
    assert len(total) == 1 and total[0].split("|")[2].strip() == "36"


def test_devices():
    assert device_rate() == (989e12 * 0.4, "h100 (989 TFLOP/s dense bf16) at MFU 0.4")
    assert device_rate("A100", 0.5)[0] == 312e12 * 0.5
    assert device_rate("500")[0] == 500e12 * 0.4
    assert device_rate(cpu_gflops=20)[0] == 20e9
    with pytest.raises(ConfigError, match="--mfu"):
        device_rate("h100", 1.5)


@pytest.mark.parametrize("gpu", ["v100", "-3", "0"])
def test_bad_gpu_gives_one_line(gpu, capsys):
    assert cli.main(["plan", "--config", DEFAULT, "--gpu", gpu]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--gpu {gpu!r} is not known" in err and "h100" in err


def test_help_says_the_mfu_is_not_calibrated(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["plan", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "usage: vitnas plan" in out and "not calibrated" in out and "PCIe is 756" in out


@pytest.mark.slow
@pytest.mark.parametrize("configs, target", [([], "all"), (["imagenet_resnas.yaml"], "all"),
                                             (["config.yaml"], "replicates")])
def test_job_list_is_what_snakemake_plans(tmp_path, configs, target):
    """`plan.jobs` mirrors the rules: the same jobs per rule as Snakemake's own dry run."""
    from collections import Counter

    from conftest import run, workflow_copy
    files = [str(REPO / "config" / c) for c in configs]
    r = run(["snakemake", target, "-n", "--quiet", "rules", *(["--configfile", *files] if files else [])],
            cwd=workflow_copy(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    planned = {}
    for line in (r.stdout + r.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", target):
            planned[parts[0]] = int(parts[1])
    cfg = config.load(DEFAULT, *files)
    ours = Counter(job.rule for job in jobs(cfg, replicates=target == "replicates"))
    # The plan leaves out only the rules that train or score no network: merging and writing tables,
    # and the search-quality study (a lookup table, seconds of CPU).
    assert set(planned) - set(ours) <= {"reference", "figures", "families", "published", "replicates_report",
                                        "search_quality"}
    assert {rule: planned[rule] for rule in ours} == dict(ours)
