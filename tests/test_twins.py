"""The Twins family: one counter (analytic == traced, and == timm's own Twins models), export
equivalence under every sharing x identity-shifting combination, exported networks that load into
timm's `Twins`, multi-architecture batches, the space's operators, the baseline, the feature maps
and the config. Spaces are built directly (28 px) to stay fast."""
import itertools
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import set_fused_attn
from timm.models.twins import GlobalSubSampleAttn, LocallyGroupedAttn, Twins

from conftest import traced_macs
from vitnas import checks, config, families
from vitnas.arch import Arch
from vitnas.config import ConfigError
from vitnas.families import twins
from vitnas.families.twins.baseline import design_baseline
from vitnas.families.twins.model import TwinsNet
from vitnas.families.twins.space import StageChoices, TwinsSpace, macs, params
from vitnas.families.twins.supernet import TwinsSupernet, export
from vitnas.errors import SpaceError
from vitnas.families import build_space
from vitnas.spaces import sampling_record
from vitnas.supernet.sharing import POLICIES

REPO = Path(__file__).resolve().parents[1]

# torch.utils.flop_counter / 2 (fused attention off) and sum(p.numel()) on timm's models, no weights.
TIMM = {"twins-svt-small": ("twins_svt_small", 2_927_353_344, 24_060_776),
        "twins-pcpvt-small": ("twins_pcpvt_small", 3_809_459_968, 24_106_216)}


def make_space(shifting: bool = True, img_size: int = 28, patch: int = 2, **over) -> TwinsSpace:
    """Two stages (14x14, 7x7 tokens) with windows that pad (5 on 14, 3 on 7), both attention
    kinds, sub-sampling 2 and 7, a 3.5 MLP ratio and removable positions that are not the last."""
    S = StageChoices
    space = TwinsSpace(patch=patch, img_size=img_size, in_chans=1, num_classes=10, identity_shifting=shifting, stages=(
        S((8, 12, 16), (1, 2), (2, 4), 3, (0, 2), (1, 5, 7), (2, 7)),
        S((24, 32), (2, 4), (2, 3.5), 4, (1, 2, 3), (3, 7), (1, 7))), **over)
    space.check()
    return space


def perturbed(space: TwinsSpace, sharing: str = "cyclic") -> TwinsSupernet:
    """A supernet in eval mode whose norms and biases are non-trivial, so that a slicing error
    cannot hide behind ones and zeros."""
    torch.manual_seed(0)
    net = TwinsSupernet(space, sharing)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def uniform(space: TwinsSpace, arch: Arch) -> Arch:
    """`arch` with every block of a stage like the stage's first computing one (timm's Twins
    constructor takes one head count and MLP ratio per stage)."""
    stages = []
    for stage in arch.stages:
        first = stage.blocks[0]
        stages.append(replace(stage, layers=tuple(replace(first, identity=l.identity) for l in stage.layers)))
    return replace(arch, stages=tuple(stages))


def timm_twins(arch: Arch, img_size: int, in_chans: int, num_classes: int) -> Twins:
    """timm's own Twins with `arch`'s (uniform) stages."""
    return Twins(img_size=img_size, patch_size=arch.patch, in_chans=in_chans, num_classes=num_classes,
                 embed_dims=[s.embed for s in arch.stages], num_heads=[s.blocks[0].heads for s in arch.stages],
                 mlp_ratios=[s.blocks[0].mlp / s.embed for s in arch.stages], depths=[s.depth for s in arch.stages],
                 sr_ratios=[s.sr for s in arch.stages], wss=[s.ws for s in arch.stages])


# ------------------------------------------------------------------------------------------ counting
@pytest.mark.parametrize("name", sorted(TIMM))
def test_reference_archs_are_timms_models(name):
    """The architecture files count what the flop counter measures on timm's own model, and the
    stand-alone network of the file is timm's model: same keys and shapes, same outputs."""
    spec = json.loads((REPO / "config" / "archs" / f"{name}.json").read_text())
    assert spec["input"] == {"img_size": 224, "in_chans": 3, "num_classes": 1000} and spec["source"]
    arch = Arch.from_dict(spec)
    variant, n_macs, n_params = TIMM[name]
    assert macs(arch, 224, 3, 1000) == n_macs and params(arch, 224, 3, 1000) == n_params
    assert families.count(arch, 224, 3, 1000) == {"family": "twins", "macs": n_macs, "params": n_params,
                                                   "convention": "timm"}
    torch.manual_seed(0)
    theirs = timm.create_model(variant, pretrained=False).eval()
    assert sum(p.numel() for p in theirs.parameters()) == n_params
    x = torch.randn(1, 3, 224, 224)
    set_fused_attn(False)
    try:
        for m in theirs.modules():
            if isinstance(m, (LocallyGroupedAttn, GlobalSubSampleAttn)):
                m.fused_attn = False
        with torch.no_grad():
            assert traced_macs(theirs, x) == n_macs
    finally:
        set_fused_attn(True)
    ours = TwinsNet(arch, 224, 3, 1000).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.set_fused_attn(False)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


def test_unknown_convention_is_refused():
    arch = Arch.load(REPO / "config" / "archs" / "twins-svt-small.json")
    with pytest.raises(SpaceError, match="not known for the twins family"):
        families.count(arch, 224, 3, 1000, "vitas")


# ---------------------------------------------------------------------------------------- supernet
@pytest.mark.parametrize("sharing, shifting", list(itertools.product(POLICIES, (True, False))))
def test_export_equivalence_and_macs_under_every_switch(sharing, shifting):
    """The supernet's logits are the sum of its exported paths (one unless bilateral), and every
    exported model costs exactly the analytic MACs and parameters (padded windows included)."""
    space = make_space(shifting)
    net = perturbed(space, sharing)
    rng, x = random.Random(0), torch.randn(3, 1, 28, 28)
    archs = [space.sample(rng, 0.4) for _ in range(4)] + [space.smallest(), space.largest()]
    assert {a.stages[0].ws for a in archs} >= {1, 5} and any(a.depth < space.max_depth for a in archs)
    if not shifting:  # an identity at position 0: the block at position 1 computes LSA, with the PosConv
        assert any(a.stages[0].layers[0].identity for a in archs + [space.sample(rng, 0.9) for _ in range(10)])
    for arch in archs:
        paths = range(2 if sharing == "bilateral" else 1)
        models = [export(net, arch, path).eval() for path in paths]
        with torch.no_grad():
            torch.testing.assert_close(net(x, arch), sum(m(x) for m in models), rtol=0, atol=1e-5)
            for model in models:
                model.set_fused_attn(False)  # FlopCounterMode sees nothing inside fused SDPA on CPU
                assert traced_macs(model, x[:1]) == space.macs(arch)
                assert sum(p.numel() for p in model.parameters()) == space.params(arch)


def test_export_equivalence_with_no_identity_at_the_start():
    """Without shifting, a skipped position 0 makes the block at position 1 the stage's first:
    LSA (index 0) followed by the position conv, in the supernet and in the exported model."""
    space = make_space(shifting=False)
    net = perturbed(space)
    arch = space.largest()
    s0 = arch.stages[0]
    arch = replace(arch, stages=(replace(s0, ws=5, layers=(replace(s0.layers[0], identity=True),) + s0.layers[1:]),
                                 *arch.stages[1:]))
    assert space.contains(arch)
    model = export(net, arch).eval()
    assert isinstance(model.blocks[0][0].attn, LocallyGroupedAttn) and isinstance(model.blocks[0][1].attn, GlobalSubSampleAttn)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(net(x, arch), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("ws, sr", [((7, 3), (7, 1)), ((1, 7), (2, 1))])
def test_uniform_export_loads_into_timms_twins(ws, sr):
    """A uniform sub-network (SVT-style windows, or PCPVT-style GSA in stage 1) exported from the
    supernet is a state dict of timm's `Twins` (strict=True) with the same outputs."""
    space = make_space()
    net = perturbed(space)
    arch = uniform(space, space.sample(random.Random(3), 0.5))
    arch = replace(arch, stages=tuple(replace(s, ws=w, sr=r) for s, w, r in zip(arch.stages, ws, sr)))
    assert space.contains(arch)
    model = export(net, arch).eval()
    theirs = timm_twins(arch, 28, 1, 10).eval()
    theirs.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), net(x, arch), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in theirs.parameters()) == space.params(arch)


def test_multi_arch_batch_and_gradients_equal_separate_passes():
    net = perturbed(make_space())
    rng = random.Random(5)
    archs = [net.space.sample(rng, 0.5) for _ in range(3)]
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    with torch.no_grad():
        joint = net(x, archs)
        separate = torch.cat([net(part, a) for part, a in zip(x.split(2), archs)])
    torch.testing.assert_close(joint, separate, rtol=0, atol=1e-6)
    net.zero_grad()
    F.cross_entropy(net(x, archs), y, reduction="sum").backward()
    grads = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in net.named_parameters()}
    net.zero_grad()
    for xi, yi, arch in zip(x.split(2), y.split(2), archs):
        F.cross_entropy(net(xi, arch), yi, reduction="sum").backward()
    for n, p in net.named_parameters():
        torch.testing.assert_close(grads[n], p.grad if p.grad is not None else torch.zeros_like(p),
                                   rtol=1e-4, atol=1e-5, msg=n)
    with pytest.raises(ValueError, match="sub-batches"):
        net(x[:5], archs)
    short = replace(archs[0], stages=(replace(archs[0].stages[0], layers=archs[0].stages[0].layers[:2]),
                                      archs[0].stages[1]))
    with pytest.raises(ValueError, match="layers per stage"):
        net(x, short)


def test_sub_state_dict_keys_drop_path_and_sharing():
    space = make_space()
    net = twins.build_supernet(space, {"sharing": "cyclic", "drop_path": 0.4})
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for s in net.stages for b in s.blocks]
    assert rates == pytest.approx([0.4 * i / 6 for i in range(7)])  # over every position
    arch = space.largest()
    state = net.sub_state_dict(arch)
    assert {"patch_embeds.0.proj.weight", "patch_embeds.1.norm.weight", "blocks.0.0.attn.qkv.weight",
            "blocks.0.1.attn.kv.weight", "blocks.0.1.attn.sr.weight", "pos_block.1.proj.0.weight",
            "head.weight"} <= set(state)
    assert set(state) == set(export(net.eval(), arch).state_dict())
    # Cyclic windows: width 8 of 16 channels starts at channel 0, width 12 after it (wrapping).
    small = replace(arch, stages=(replace(arch.stages[0], embed=8, layers=tuple(
        replace(l, qkv=8, mlp=16) for l in arch.stages[0].layers)), arch.stages[1]))
    w = net.stages[0].patch_proj.weight
    assert torch.equal(net.sub_state_dict(small)["patch_embeds.0.proj.weight"], w[:8])
    mid = replace(small, stages=(replace(small.stages[0], embed=12, layers=tuple(
        replace(l, qkv=12, mlp=24) for l in small.stages[0].layers)), arch.stages[1]))
    assert torch.equal(net.sub_state_dict(mid)["patch_embeds.0.proj.weight"], w[[8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3]])
    # GSA's sub-sampling convs exist per ratio (> 1), and only where a position can compute GSA.
    assert sorted(net.stages[0].blocks[0].sr) == ["2", "7"]  # window 1 is a choice: GSA anywhere
    assert [sorted(b.sr) for b in net.stages[1].blocks] == [[], ["7"], [], ["7"]]  # windows 3, 7: LSA at 0, 2
    svt = replace(space, stages=(replace(space.stages[0], wss=(7,)), space.stages[1]))
    assert [len(b.sr) for b in TwinsSupernet(svt).stages[0].blocks] == [0, 2, 0]  # shifted: LSA, GSA, LSA


# ------------------------------------------------------------------------------------------- space
@pytest.mark.parametrize("shifting", [True, False])
def test_operators_keep_identities_where_the_switch_puts_them(shifting):
    space = make_space(shifting)
    rng = random.Random(2)
    archs = [space.sample(rng, p) for p in (0.0, 0.3, 0.7, 1.0) for _ in range(25)]
    children = [space.mutate(a, rng, 0.5) for a in archs]
    children += [space.crossover(rng.choice(archs), rng.choice(archs), rng) for _ in range(80)]
    for a in archs + children:
        assert space.contains(a), a
        assert space.canonical(a) == a  # sampled, mutated and crossed networks are canonical
        for stage, st in zip(a.stages, space.stages):
            flags = [l.identity for l in stage.layers]
            if shifting:
                assert flags == sorted(flags)  # identities at the stage's end
            else:
                assert {i for i, f in enumerate(flags) if f} <= set(st.removable)
    assert all(a.depth == space.max_depth for a in archs[:25])
    assert all(a.depth == space.min_depth == 2 for a in archs[75:100])
    kids = {space.key(space.crossover(archs[3], archs[40], random.Random(s))) for s in range(10)}
    assert len(kids) > 1
    depth = make_space(shifting, sampling="depth")
    assert {depth.sample(rng, max_depth=depth.min_depth + 1).depth for _ in range(60)} == {2, 3}


def test_keys_canonical_forms_and_json():
    shifted, fixed = make_space(True), make_space(False)
    arch = fixed.largest()
    s1 = arch.stages[1]
    gap = lambda i, l: replace(l, identity=True, heads=2) if i == 1 else l
    a = replace(arch, stages=(arch.stages[0], replace(s1, layers=tuple(gap(i, l) for i, l in enumerate(s1.layers)))))
    b = replace(a, stages=(arch.stages[0], replace(s1, layers=a.stages[1].shifted().layers)))  # identity at the end
    c = replace(a, stages=(arch.stages[0], replace(a.stages[1], layers=tuple(
        replace(l, heads=4) if l.identity else l for l in a.stages[1].layers))))
    assert shifted.key(a) == shifted.key(b) and fixed.key(a) != fixed.key(b)  # one network when shifted
    assert fixed.key(a) == fixed.key(c)  # an identity's own choices are ignored
    assert shifted.canonical(a) == b and fixed.canonical(a) is a
    assert fixed.key(a) != fixed.key(replace(a, stages=(replace(a.stages[0], ws=1), a.stages[1])))  # ws is a choice
    assert Arch.from_json(a.to_json()) == a and a.to_dict()["stages"][0]["ws"] == 7
    vit = Arch.uniform(4, 32, 2, 2, 32, 64, family="vit")  # other families: no ws / sr, keys as before
    assert "ws" not in vit.to_dict()["stages"][0] and vit.key() == ("vit", 4, 0, ((32, ((2, 32, 64),) * 2),))
    assert not fixed.contains(replace(a, stages=(replace(a.stages[0], sr=4), a.stages[1])))
    assert not fixed.contains(replace(a, stages=(replace(a.stages[0], layers=tuple(
        replace(l, mlp=l.mlp + 1) for l in a.stages[0].layers)), a.stages[1])))


@pytest.mark.parametrize("over, key", [
    (dict(patch=3), "space.patch"),
    (dict(img_size=36, patch=4), r"space.stages\[1\]: its patch merging halves a 9x9"),
])
def test_check_names_the_key(over, key):
    with pytest.raises(SpaceError, match=key):
        make_space(**over)


@pytest.mark.parametrize("field, value, key", [
    ("wss", (1, 15), r"space.stages\[0\].wss"),
    ("sr_ratios", (3,), r"space.stages\[0\].sr_ratios"),
    ("heads", (1, 3), r"space.stages\[0\].heads"),
    ("removable", (0, 1, 2), r"space.stages\[0\].removable"),
    ("removable", (3,), r"space.stages\[0\].removable"),
])
def test_stage_checks_name_the_key(field, value, key):
    space = make_space()
    with pytest.raises(SpaceError, match=key):
        replace(space, stages=(replace(space.stages[0], **{field: value}), space.stages[1])).check()


@pytest.mark.parametrize("shifting", [True, False])
def test_window_helpers_agree_with_samples(shifting):
    space = make_space(shifting)
    rng = random.Random(0)
    archs = [space.sample(rng, 0.5) for _ in range(300)]
    ranked = sorted(space.macs(a) for a in archs)
    lo, hi = ranked[40], ranked[70]
    inside = [a for a in archs if lo <= space.macs(a) <= hi]
    deepest, usable = space.deepest_in_window(lo, hi), set(space.usable_layers(lo, hi))
    assert inside and max(a.depth for a in inside) <= deepest
    for a in inside:
        flat = [l for s in a.stages for l in s.layers]
        assert {i for i, l in enumerate(flat) if not l.identity} <= usable
    smallest, largest = space.macs_range()
    assert all(smallest <= space.macs(a) <= largest for a in archs)
    assert space.deepest_in_window(1, 2) == 0 and space.usable_layers(1, 2) == []
    assert space.deepest_in_window(largest, largest) == space.max_depth
    usage = space.usage(archs[:20])
    assert set(usage["choices"]) == {"embed0", "ws0", "sr0", "embed1", "ws1", "sr1", "heads", "mlp_ratio"}
    assert abs(sum(usage["choices"]["mlp_ratio"].values()) - 1) < 1e-9


# ---------------------------------------------------------------------------------- config, baseline
def default_cfg(**supernet) -> dict:
    return config.validate({"spaces": {"twins": {"family": "twins"}}, "supernet": supernet})


def test_default_config_space_budgets_and_baseline():
    cfg = default_cfg()
    space = build_space(cfg)
    assert isinstance(space, TwinsSpace) and space.img_size == 28 and space.identity_shifting
    assert [st.blocks for st in space.stages] == [2, 4] and space.stages[0].wss == (1, 7)
    lo, hi = space.macs_range()
    assert lo < 1e6 and hi > 6e6
    checks.check_experiment(cfg)  # 2M and 4M: in range, windows hold networks and the baseline
    for budget, c in (("2M", 2e6), ("4M", 4e6)):
        arch = design_baseline(space, budget, cfg["space"]["baseline"], 0.9)
        assert 0.9 * c <= space.macs(arch) <= c
        assert [s.embed for s in arch.stages] == [arch.stages[0].embed, 2 * arch.stages[0].embed]
        assert [s.depth for s in arch.stages] == [1, 2] and [s.ws for s in arch.stages] == [7, 7]
        record = sampling_record(cfg, space, budget)  # ViTAS's budget-driven identity probability
        assert record["source"] == "budget" and 0.9 * c <= record["mean_macs"] <= c
    torch.manual_seed(0)
    model = families.build_model(arch, space)
    assert sum(p.numel() for p in model.parameters()) == space.params(arch)
    with pytest.raises(SpaceError, match="space.baseline") as e:
        design_baseline(space, "4M", cfg["space"]["baseline"], 0.9999)
    assert "\n" not in str(e.value)
    with pytest.raises(SpaceError, match="space.baseline.blocks"):
        design_baseline(space, "4M", {"blocks": [1, 1, 1], "head_dim": 8, "mlp_ratio": 4})
    assert not default_cfg(identity_shifting=False)["space"] is None
    assert build_space(default_cfg(identity_shifting=False)).identity_shifting is False


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="spaces.twins"):  # `ws` is not a stage key (`wss` is)
        config.validate({"spaces": {"twins": {"family": "twins", "stages": [{"embed_dims": [8], "heads": [1],
                                                                             "mlp_ratios": [2], "blocks": 2,
                                                                             "ws": [7]}]}}})
    with pytest.raises(ConfigError, match="patch_sizes"):  # a vit key in a twins space
        config.validate({"spaces": {"twins": {"family": "twins", "patch_sizes": [4]}}})
    cfg = config.validate({"spaces": {"t": {"family": "twins", "stages": [
        {"embed_dims": [8], "heads": [1], "mlp_ratios": [2], "blocks": 1, "sr_ratios": [5]}]}}})
    with pytest.raises(SpaceError, match=r"sr_ratios: 5 does not divide"):
        build_space(cfg)


def test_paper_config_is_valid_and_holds_twins_svt_small():
    cfg = config.load(str(REPO / "config/config.yaml"), str(REPO / "config/imagenet_vitas_twins.yaml"))
    assert list(config.active_spaces(cfg)) == ["svt"] and cfg["transfer"]["detector"] == "retinanet"
    space = build_space(cfg)
    assert (space.img_size, space.in_chans, space.num_classes, space.patch) == (224, 3, 1000, 4)
    svt_s = Arch.load(REPO / "config" / "archs" / "twins-svt-small.json")
    padded = replace(svt_s, stages=tuple(
        replace(s, layers=s.layers + tuple(replace(s.layers[0], identity=True) for _ in range(st.blocks - s.depth)))
        for s, st in zip(svt_s.stages, space.stages)))
    assert space.contains(padded) and space.macs(padded) == TIMM["twins-svt-small"][1]
    base = design_baseline(space, "2.9274G", cfg["space"]["baseline"], 0.9)
    assert space.key(base) == space.key(padded)  # the baseline of Twins-SVT-S's budget is Twins-SVT-S
    lo, hi = space.macs_range()
    assert lo < 2.9274e9 and 8.5626e9 < hi


# ------------------------------------------------------------------------------------------- model
def test_forward_intermediates_shapes_and_strides():
    space = make_space()
    arch = space.largest()
    torch.manual_seed(0)
    model = families.build_model(arch, space).eval()
    info = model.feature_info
    assert [f["reduction"] for f in info] == [2] * 3 + [4] * 4 and [f["num_chs"] for f in info] == [16] * 3 + [32] * 4
    for size in (28, 64):  # 64: a detection canvas (no position table to resample)
        x = torch.randn(2, 1, size, size)
        with torch.no_grad():
            feats, maps = model.forward_intermediates(x, indices=[2, 6])
            last = model.forward_intermediates(x, indices=1, intermediates_only=True, norm=True)
            assert [m.shape for m in maps] == [(2, 16, size // 2, size // 2), (2, 32, size // 4, size // 4)]
            torch.testing.assert_close(last[0], feats.transpose(1, 2).reshape(last[0].shape))
            torch.testing.assert_close(model(x), model.forward_head(feats))


def test_arms_and_switches():
    """(Torch-free and complete: test_family_contract.py.)"""
    assert set(twins.ARMS) == {"full", "no_cyclic", "no_shifting", "no_budget_prob"}
    assert twins.SWITCHES == ("sharing", "identity_shifting", "sampling", "identity_prob")
    assert families.get("twins").Space is TwinsSpace and "twins" in families.names()
