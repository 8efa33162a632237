"""The ablation study's pieces: the arms' configs and descriptions, loss-spike counting.
Torch-free."""
import pytest

from vitnas import checks, config
from vitnas.ablation import arm_description, count_nans, count_spikes, variant_config
from vitnas.families.vit import ARMS
from vitnas.spaces import SpaceError
from vitnas.variants import selected_variants

VARIANTS = {name: arm["supernet"] for name, arm in ARMS.items()}

from conftest import REPO


@pytest.fixture(scope="module")
def cfg():
    return config.for_space(config.load(str(REPO / "config/config.yaml")), "vit")


def test_arms_are_the_documented_ten():
    assert list(VARIANTS) == ["full", "no_private_tokens", "no_private_qk", "no_cyclic", "bilateral",
                              "no_shifting", "no_budget_prob", "depth_sampling", "no_weak_aug", "autoformer"]


FULL = {"private_tokens": True, "private_qk": True, "sharing": "cyclic", "identity_shifting": True,
        "sampling": "layerwise", "identity_prob": "budget"}


@pytest.mark.parametrize("name, expected", [
    ("full", FULL),
    ("no_private_tokens", FULL | {"private_tokens": False}),
    ("no_private_qk", FULL | {"private_qk": False}),
    ("no_cyclic", FULL | {"sharing": "prefix"}),
    ("bilateral", FULL | {"sharing": "bilateral"}),
    ("no_shifting", FULL | {"identity_shifting": False}),
    ("no_budget_prob", FULL | {"identity_prob": 0.5}),
    ("depth_sampling", FULL | {"sampling": "depth"}),
    ("no_weak_aug", FULL),
    # AutoFormer: uniform depth, first layers, prefix sharing, no private tokens or Q/K.
    ("autoformer", {"private_tokens": False, "private_qk": False, "sharing": "prefix",
                    "identity_shifting": True, "sampling": "depth"}),
])
def test_variant_configs(cfg, name, expected):
    vc = variant_config(cfg, name)
    sn = vc["supernet"]
    assert {k: sn[k] for k in expected} == expected
    assert sn["max_steps"] == cfg["ablation"]["supernet_steps"]
    assert sn["threads"] == cfg["ablation"]["threads"]
    if name == "no_weak_aug":  # DeiT's full supernet recipe: Mixup + CutMix + RandAugment + erasing + drop-path
        aug = sn["augment"]
        assert aug["randaugment"] == "rand-m9-mstd0.5-inc1" and aug["mixup"] == 0.8 and aug["cutmix"] == 1.0
        assert aug["random_erasing"] == 0.25 and sn["drop_path"] == 0.1
        assert arm_description(cfg, name)["recipe"] == "DeiT"
    else:
        assert arm_description(cfg, name)["recipe"] == "weak"
        assert sn["augment"] == cfg["supernet"]["augment"] and sn["drop_path"] == 0.0
    assert vc == config.validate(vc)  # a valid, complete config
    checks.check_experiment(vc)  # "budget" resolves for every budget
    description = arm_description(cfg, name)  # what the ablation table shows
    shown = expected | ({"identity_prob": "unused"} if sn["sampling"] == "depth" else {})
    assert {k: description[k] for k in shown} == shown
    assert description["drop_path"] == sn["drop_path"] and description["mixup"] == sn["augment"]["mixup"]
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
    with pytest.raises(SpaceError, match="unknown variant 'no_such'"):
        checks.check_experiment(bad)


def test_spike_and_nan_counting():
    # Running median of earlier rows: 2.0 -> 1.9 -> ... ; 3.5 > 1.5 x 1.9 is a spike, 2.5 is not.
    log = [2.0, 1.8, 3.5, 1.7, 2.5, float("nan"), 1.6, 1.0, 4.0]
    assert count_spikes(log) == 2  # 3.5 (median 1.9) and 4.0 (median 1.8)
    assert count_nans(log) == 1
    assert count_spikes([3.0, 2.0, 1.5, 1.2, 1.0]) == 0  # a falling loss never spikes
    assert count_spikes([]) == 0 and count_nans([]) == 0
    assert count_spikes([1.0, 1.6], factor=1.5) == 1 and count_spikes([1.0, 1.5]) == 0


def test_defaults_are_the_full_method_and_the_study_runs_with_the_replicates(cfg):
    """The schema's defaults and the embedded config both train the full ViTAS method (the
    `full` arm's switches); the embedded default run leaves the ablation to `replicates`, which
    keeps the default run within its time."""
    for sn in (config.validate({})["supernet"], cfg["supernet"]):
        assert {k: sn[k] for k in VARIANTS["full"]} == VARIANTS["full"]
        assert sn["drop_path"] == 0.0 and sn["augment"]["randaugment"] is None  # weak recipe
    weak = config.validate({})["supernet"]["augment"]
    assert weak["cutmix"] == 1.0 and weak["random_erasing"] == 0.25 and weak["mixup"] == 0.0
    assert cfg["ablation"]["enabled"] is False and cfg["ablation"]["random_subnets"] == 20
    assert sn["per_budget"] is True and cfg["search"]["min_budget_fraction"] == 0.9
