"""The macro family (NAS-Bench-Macro's space): its counts reproduce the benchmark's for every one of
its 6,561 networks, its models and supernet agree with those counts and with each other, identity
shifting merges exactly the encodings that are one network, the switches that apply act and the
others are refused, the baseline lies in its window, and `Layer.op` leaves every other family's
files and keys as they were."""
import json
from importlib import resources
import random
from pathlib import Path

import pytest
import torch

from conftest import perturb_, traced_macs
from vitnas import config, families, spaces, variants
from vitnas.arch import Arch, Layer
from vitnas.errors import SpaceError
from vitnas import tabular
from vitnas.families import macro
from vitnas.families.macro.space import MacroSpace, bench_key, every_network, from_key

BENCH = resources.files("vitnas").joinpath(*tabular.DATA)  # the copy shipped with the package
CIFAR = MacroSpace(img_size=32, in_chans=3, num_classes=10)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> dict:
    return json.loads(BENCH.read_text())


def test_every_benchmark_network_has_the_benchmarks_macs_and_params(bench):
    """FLOPs in the benchmark are multiply-accumulates (convolutions and the classifier's weights);
    params count BatchNorm's affine parameters and the classifier's bias."""
    assert len(bench) == 3 ** 8
    for key, entry in bench.items():
        arch = from_key(key)
        assert bench_key(arch) == key and CIFAR.contains(arch)
        assert CIFAR.macs(arch, "nasbench") == CIFAR.macs(arch) == entry["flops"], key
        assert CIFAR.params(arch) == entry["params"], key
    assert min(e["flops"] for e in bench.values()) == CIFAR.macs(CIFAR.smallest()) == 7_713_280
    assert max(e["flops"] for e in bench.values()) == CIFAR.macs(CIFAR.largest()) == 105_660_928


def test_shift_equivalent_benchmark_networks_are_one_network(bench):
    """Identity shifting merges the 6,561 encodings into 9 x 21 x 21 networks (per stage: the
    downsampling layer's 3 ops, then 0 to n-1 blocks of 2 ops), each with one count."""
    by_key = {}
    for key, entry in bench.items():
        by_key.setdefault(CIFAR.key(from_key(key)), set()).add((entry["flops"], entry["params"]))
    assert len(by_key) == 3 * (1 + 2) * (3 * (1 + 2 + 4)) ** 2 == 3969
    assert all(len(counts) == 1 for counts in by_key.values())
    positional = MacroSpace(identity_shifting=False)
    assert len({positional.key(from_key(k)) for k in bench}) == 6561


@pytest.mark.parametrize("key", ["00000000", "22222222", "01201210", "10020001"])
@pytest.mark.parametrize("space", [CIFAR, MacroSpace(img_size=28, in_chans=1, num_classes=7)], ids=["cifar", "28px"])
def test_models_measure_the_analytic_counts(space, key):
    """Traced MACs (FLOPs / 2) and the parameters of built models equal the analytic counts, also
    at an image size whose stages halve odd sides (28 -> 14 -> 7 -> 4)."""
    torch.manual_seed(0)
    arch = from_key(key)
    model = macro.build_model(arch, space).eval()
    with torch.no_grad():
        assert traced_macs(model, torch.randn(1, space.in_chans, space.img_size, space.img_size)) == space.macs(arch)
    assert sum(p.numel() for p in model.parameters()) == space.params(arch)
    assert macro.macs(arch, space.img_size, space.in_chans, space.num_classes) == space.macs(arch)


def test_supernet_is_single_path_and_exports_its_forward():
    """One weight set per choice per layer (identities at stride 1 have none); the exported model
    computes the supernet's forward."""
    torch.manual_seed(0)
    net = perturb_(macro.build_supernet(CIFAR, {"drop_path": 0.0})).eval()
    assert [sorted(layer) for layer in net.layers] == (
        [["ir_3x3_t3", "ir_5x5_t6", "proj"], ["ir_3x3_t3", "ir_5x5_t6"]]
        + [["ir_3x3_t3", "ir_5x5_t6", "proj"], ["ir_3x3_t3", "ir_5x5_t6"], ["ir_3x3_t3", "ir_5x5_t6"]] * 2)
    x = torch.randn(3, 3, 32, 32)
    for key in ("01102001", "22222222", "00000000"):
        arch = from_key(key)
        model = macro.export(net, arch).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), net(x, arch), rtol=0, atol=1e-5)
        assert model.state_dict().keys() == net.sub_state_dict(arch).keys()
    with pytest.raises(ValueError, match="not a network of the macro space"):
        macro.export(net, Arch.uniform(4, 32, 2, 2, 32, 64, family="vit"))


def test_identity_shifting_moves_identities_behind_each_stages_blocks():
    """The downsampling layer stays first (its "id" is a projection); stride-1 identities go to
    the stage's end; shifted encodings build the same model, positional ones stay apart."""
    arch = from_key("01" "102" "001")
    assert bench_key(CIFAR.canonical(arch)) == "01" "120" "010"
    assert CIFAR.key(arch) == CIFAR.key(from_key("01120010")) != CIFAR.key(from_key("10120010"))
    positional = MacroSpace(identity_shifting=False)
    assert positional.canonical(arch) == arch and positional.key(arch) != positional.key(from_key("01120010"))
    shapes = lambda a: [(k, tuple(v.shape)) for k, v in macro.build_model(a, CIFAR).state_dict().items()]
    assert shapes(arch) == shapes(CIFAR.canonical(arch))
    assert [l.op for l in arch.stages[2].layers] == ["proj", "id", "ir_3x3_t3"]
    assert arch.depth == 6 and CIFAR.min_depth == 3  # projections compute


def test_uniform_sampling_draws_every_op_a_third_of_the_time():
    rng, counts = random.Random(0), {}
    n = 3000
    for _ in range(n):
        for op in bench_key(CIFAR.sample(rng, macro.UNIFORM)):
            counts[op] = counts.get(op, 0) + 1
    assert all(abs(c / (8 * n) - 1 / 3) < 0.02 for c in counts.values()) and len(counts) == 3
    assert {bench_key(CIFAR.sample(rng, 1.0)) for _ in range(5)} == {"00000000"}


def test_budget_driven_identity_probability_centres_the_samples_in_the_window():
    cfg = {"seed": 0, "supernet": {"identity_prob": "budget", "per_budget": True},
           "search": {"budgets": ["30M", "60M"], "min_budget_fraction": 0.9}}
    small = spaces.sampling_record(cfg, CIFAR, "30M")
    large = spaces.sampling_record(cfg, CIFAR, "60M")
    assert small["source"] == "budget" and 27e6 <= small["mean_macs"] <= 30e6
    assert 54e6 <= large["mean_macs"] <= 60e6 and large["identity_prob"] < small["identity_prob"]


def test_switches_that_apply_are_the_arms_and_the_others_are_refused():
    assert list(macro.ARMS) == ["full", "no_shifting", "no_budget_prob"]
    assert macro.SWITCHES == ("identity_shifting", "identity_prob")
    assert variants.overrides("macro", "no_budget_prob") == {"supernet": {"identity_shifting": True,
                                                                          "identity_prob": 1 / 3}}
    for vit_only in ("no_cyclic", "no_private_tokens"):
        with pytest.raises(SpaceError, match="unknown macro variant"):
            variants.check_variant("macro", vit_only)
    defaults = config.validate({})
    cfg = {"data": defaults["data"], "supernet": defaults["supernet"] | {"identity_shifting": False}}
    space = MacroSpace.from_config(cfg)
    assert (space.img_size, space.in_chans, space.identity_shifting) == (28, 1, False)
    with pytest.raises(SpaceError, match="supernet.sampling: depth does not apply to the macro family"):
        MacroSpace.from_config(cfg | {"supernet": defaults["supernet"] | {"sampling": "depth"}})


@pytest.mark.parametrize("budget", ["12M", "30M", "50M", "70M", "105M"])
def test_baseline_lies_in_its_window_and_is_uniform(budget):
    arch = macro.design_baseline(CIFAR, budget, {"ops": ["ir_3x3_t3", "ir_5x5_t6"]}, 0.9)
    c = spaces.parse_macs(budget)
    assert 0.9 * c <= CIFAR.macs(arch) <= c and CIFAR.contains(arch) and CIFAR.canonical(arch) == arch
    assert len({l.op for l in arch.blocks} - {"proj"}) == 1


def test_baseline_picks_the_most_blocks_then_the_most_macs():
    assert bench_key(macro.design_baseline(CIFAR, "50M", {"ops": ["ir_3x3_t3"]}, 0.9)) == "11111011"
    with pytest.raises(SpaceError, match="space.baseline: no uniform network of ir_3x3_t3 lies in the search"):
        macro.design_baseline(CIFAR, "9M", {"ops": ["ir_3x3_t3"]}, 0.9)


def test_windows_know_their_deepest_network_and_usable_layers():
    nets = every_network(32, 3, 10)
    assert len(nets) == 6561
    assert CIFAR.deepest_in_window(7e6, 8e6) == 3 and CIFAR.usable_layers(7e6, 8e6) == [0, 2, 5]
    assert CIFAR.deepest_in_window(100e6, 106e6) == 8 and CIFAR.usable_layers(0, 2e8) == list(range(8))
    assert CIFAR.deepest_in_window(1, 2) == 0


def test_layer_op_is_serialised_and_keyed_only_where_set():
    """Files and keys of the op-less families are as before `Layer.op` (the earlier to_dict,
    written out here); a macro network's ops survive a JSON round trip and tell networks apart."""
    def earlier(a: Arch) -> str:
        layers = lambda s: [{"heads": l.heads, "qkv": l.qkv, "mlp": l.mlp, "identity": l.identity} for l in s.layers]
        return json.dumps({"family": a.family, "patch": a.patch} | ({"stem": a.stem} if a.stem else {}) | {
            "stages": [{"embed": s.embed} | s.attention | {"layers": layers(s)} for s in a.stages]}, indent=1)

    for path in sorted((REPO / "config" / "archs").glob("*.json")):
        arch = Arch.load(path)
        assert arch.to_json() == earlier(arch)
        assert all(len(dims) == 3 for s in arch.key()[3] for dims in s[1] if dims is not None)
    arch = from_key("12012012")
    assert Arch.from_json(arch.to_json()) == arch and '"op": "ir_5x5_t6"' in arch.to_json()
    assert Layer(0, 0, 96, op="ir_3x3_t3").dims() != Layer(0, 0, 96, op="ir_5x5_t6").dims()


def test_registered_by_name():
    assert "macro" in families.names() and families.get("macro") is macro
    assert families.count(from_key("00000000"), 32, 3, 10, "nasbench")["macs"] == 7_713_280


def test_identity_shifting_trains_a_stages_first_layers():
    """With shifting, sampled and mutated networks are canonical (identities at each stage's end), so
    the supernet trains the layers scoring uses; without it, identities stay where they were drawn."""
    rng = random.Random(0)
    shifted = [CIFAR.sample(rng, 0.5) for _ in range(200)] + [CIFAR.mutate(CIFAR.largest(), rng, 0.5) for _ in range(50)]
    assert all(a == a.shifted() for a in shifted)
    plain = MacroSpace(identity_shifting=False)
    assert any(a != a.shifted() for a in (plain.sample(rng, 0.5) for _ in range(200)))
