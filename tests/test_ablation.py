"""The ablation study's pieces: variant configs, the stratified architectures, rank correlations,
loss-spike counting, and the report's ablation table. Torch-free apart from the report."""
import json
import math

import pytest

from vitnas import ablation, config
from vitnas.ablation import (VARIANTS, count_nans, count_spikes, rank_correlations, ranking_archs,
                             selected_variants, variant_config)
from vitnas.config import ConfigError
from vitnas.spaces import build_space, parse_macs

from conftest import REPO


@pytest.fixture(scope="module")
def cfg():
    return config.load(str(REPO / "config/config.yaml"))


def test_variants_are_the_documented_eight():
    assert list(VARIANTS) == ["full", "no_private_tokens", "no_private_qk", "no_cyclic", "no_shifting",
                              "no_budget_prob", "no_weak_aug", "autoformer"]


FULL = {"private_tokens": True, "private_qk": True, "sharing": "cyclic", "identity_shifting": True,
        "identity_prob": "budget"}


@pytest.mark.parametrize("name, expected", [
    ("full", FULL),
    ("no_private_tokens", FULL | {"private_tokens": False}),
    ("no_private_qk", FULL | {"private_qk": False}),
    ("no_cyclic", FULL | {"sharing": "prefix"}),
    ("no_shifting", FULL | {"identity_shifting": False}),
    ("no_budget_prob", FULL | {"identity_prob": 0.5}),
    ("no_weak_aug", FULL),
    ("autoformer", {"private_tokens": False, "private_qk": False, "sharing": "prefix",
                    "identity_shifting": False, "identity_prob": 0.5}),
])
def test_variant_configs(cfg, name, expected):
    vc = variant_config(cfg, name)
    sn = vc["supernet"]
    assert {k: sn[k] for k in expected} == expected
    assert sn["max_steps"] == cfg["ablation"]["supernet_steps"]
    assert sn["threads"] == cfg["ablation"]["threads"]
    if name == "no_weak_aug":  # the full DeiT recipe: RandAugment, erasing, drop-path
        assert sn["augment"]["randaugment"] == "rand-m9-mstd0.5-inc1"
        assert sn["augment"]["random_erasing"] == 0.25 and sn["drop_path"] == 0.1
    else:
        assert sn["augment"] == cfg["supernet"]["augment"] and sn["drop_path"] == 0.0
    assert vc == config.validate(vc)  # a valid, complete config
    config.check_experiment(vc)  # "budget" resolves for the smallest budget
    for section in ("data", "space", "search", "retrain"):  # only the supernet changes
        assert vc[section] == cfg[section]


def test_weak_augmentation_differs_from_the_deit_recipe(cfg):
    # Otherwise no_weak_aug would be the full method again.
    assert variant_config(cfg, "no_weak_aug")["supernet"]["augment"] != \
        variant_config(cfg, "full")["supernet"]["augment"]


def test_selected_variants_and_unknown_names(cfg):
    assert selected_variants(cfg) == list(VARIANTS)
    pick = config.deep_merge(cfg, {"ablation": {"variants": ["autoformer", "full"]}})
    assert selected_variants(pick) == ["full", "autoformer"]  # VARIANTS order
    bad = config.deep_merge(cfg, {"ablation": {"enabled": True, "variants": ["no_such"]}})
    with pytest.raises(ConfigError, match="unknown variant 'no_such'"):
        config.check_experiment(bad)


def test_ranking_archs_are_stratified_and_seeded(cfg):
    space = build_space(cfg)
    archs = ranking_archs(cfg)
    n = cfg["ablation"]["n_archs"]
    assert len(archs) == n
    lo, hi = (parse_macs(b) for b in ("2M", "4M"))
    macs = [space.macs(a) for a in archs]
    for i, m in enumerate(macs):  # one per equal-width stratum, in order
        assert lo + (hi - lo) * i / n <= m <= lo + (hi - lo) * (i + 1) / n
    assert all(a.depth >= cfg["space"]["min_depth"] for a in archs)
    again = ranking_archs(cfg)
    assert [a.to_dict() for a in again] == [a.to_dict() for a in archs]
    other = ranking_archs(config.deep_merge(cfg, {"seed": 1}))
    assert [a.to_dict() for a in other] != [a.to_dict() for a in archs]
    # Independent of the supernet switches: every variant ranks the same networks.
    assert ranking_archs(variant_config(cfg, "autoformer")) == archs


def test_single_budget_ranges_from_the_smallest_network(cfg):
    one = config.deep_merge(cfg, {"search": {"budgets": ["2M"]}, "ablation": {"n_archs": 3}})
    space = build_space(one)
    assert ablation.budget_range(one, space) == (space.macs_range()[0], 2e6)
    assert all(space.macs(a) <= 2e6 for a in ranking_archs(one))


@pytest.mark.parametrize("y, tau, rho", [
    ([10, 20, 30, 40, 50], 1.0, 1.0),      # perfectly concordant
    ([50, 40, 30, 20, 10], -1.0, -1.0),    # reversed
    ([20, 10, 30, 40, 50], 0.8, 0.9),      # one swapped pair: (10 - 2 x 1) / 10; 1 - 6 x 2 / 120
])
def test_rank_correlations(y, tau, rho):
    r = rank_correlations([1, 2, 3, 4, 5], y)
    assert r["kendall_tau"] == pytest.approx(tau)
    assert r["spearman_rho"] == pytest.approx(rho)


def test_rank_correlations_with_ties_and_constants():
    r = rank_correlations([1, 2, 3, 4], [1, 1, 2, 2])  # tau-b: 4 concordant / sqrt(6 x 4)
    assert r["kendall_tau"] == pytest.approx(4 / math.sqrt(24))
    assert math.isnan(rank_correlations([1, 2, 3], [5, 5, 5])["kendall_tau"])
    with pytest.raises(ValueError):
        rank_correlations([1], [1])


def test_spike_and_nan_counting():
    # Running median of earlier rows: 2.0 -> 1.9 -> ... ; 3.5 > 1.5 x 1.9 is a spike, 2.5 is not.
    log = [2.0, 1.8, 3.5, 1.7, 2.5, float("nan"), 1.6, 1.0, 4.0]
    assert count_spikes(log) == 2  # 3.5 (median 1.9) and 4.0 (median 1.8)
    assert count_nans(log) == 1
    assert count_spikes([3.0, 2.0, 1.5, 1.2, 1.0]) == 0  # a falling loss never spikes
    assert count_spikes([]) == 0 and count_nans([]) == 0
    assert count_spikes([1.0, 1.6], factor=1.5) == 1 and count_spikes([1.0, 1.5]) == 0


def test_report_writes_the_ablation_table(tmp_path):
    pytest.importorskip("pandas")
    from vitnas.report import ablation_tau_figure, ablation_table, load_ablation, save_figure

    for i, v in enumerate(["full", "autoformer"]):
        d = tmp_path / "ablation" / v
        d.mkdir(parents=True)
        (d / "health.json").write_text(json.dumps({
            "random_mean": 70 - i, "random_std": 2.0, "smallest": 65.0, "largest": 72.0,
            "loss_spikes": i, "loss_nans": 0}))
        (d / "ranking.json").write_text(json.dumps({"kendall_tau": 0.5 - i, "spearman_rho": 0.6 - i,
                                                    "n_archs": 12}))
        (d / "search.json").write_text(json.dumps({"accuracy": 71.0, "macs": 1.9e6, "budget": "2M"}))
    table = ablation_table(load_ablation(tmp_path, ["full", "autoformer"]))
    assert list(table["variant"]) == ["full", "autoformer"]
    assert list(table["Kendall tau"]) == [0.5, -0.5] and list(table["loss spikes"]) == [0, 1]
    assert table["search MACs (M)"].tolist() == pytest.approx([1.9, 1.9])
    save_figure(ablation_tau_figure(load_ablation(tmp_path, ["full", "autoformer"])),
                tmp_path / "tau", ["png"], 50)
    assert (tmp_path / "tau.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="ablation_search"):
        (tmp_path / "ablation/full/search.json").unlink()
        load_ablation(tmp_path, ["full"])


def test_defaults_are_the_full_method_and_the_study_runs_by_default(cfg):
    """The schema's defaults and the embedded config both train the full ViTAS method (the
    `full` variant's switches), and the embedded default run includes the ablation."""
    for sn in (config.validate({})["supernet"], cfg["supernet"]):
        assert {k: sn[k] for k in VARIANTS["full"]} == VARIANTS["full"]
        assert sn["drop_path"] == 0.0 and sn["augment"]["randaugment"] is None  # weak recipe
    weak = config.validate({})["supernet"]["augment"]
    assert weak["cutmix"] == 1.0 and weak["random_erasing"] == 0.25 and weak["mixup"] == 0.0
    assert cfg["ablation"]["enabled"] is True and cfg["ablation"]["random_subnets"] == 50
