"""The ViT-ResNAS family: the released MACs, one counter (analytic == traced), export equivalence,
multi-architecture batches, re-sorting, progressive unlocking, the space's operators, the
baseline and the feature maps. Spaces are built directly (tiny, 28-32 px) to stay fast."""
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import perturb_, traced_macs
from vitnas import families
from vitnas.arch import Arch, Layer, Stage
from vitnas.families import resnas
from vitnas.families.resnas.baseline import design_baseline
from vitnas.families.resnas.model import ResNASViT
from vitnas.families.resnas.space import ResNASSpace, StageChoices, macs, params
from vitnas.families.resnas.supernet import ResNASSupernet, export
from vitnas.spaces import SpaceError

REPO = Path(__file__).resolve().parents[1]

# The released network_defs' counts (ComputationEstimator, return_mac=True) and the paper's MACs.
RELEASED = {  # name: (exact MACs, paper MACs, params without the token-label patch head)
    "vit-res-tiny": (1_794_378_240, 1.7944e9, 42_012_736),
    "vit-resnas-tiny": (1_782_630_272, 1.7826e9, 40_793_552),
    "vit-resnas-small": (2_845_501_856, 2.8455e9, 63_724_108),
    "vit-resnas-medium": (4_513_135_936, 4.5131e9, 96_442_672),
}


def config_arch(name: str) -> Arch:
    return Arch.load(REPO / "config" / "archs" / f"{name}.json")


def make_space(residual: bool = True, stem: int = 4, img_size: int = 28, patch: int = 4, **over) -> ResNASSpace:
    """A tiny 3-stage space: 3 blocks per stage, position 1 removable (2 in the last stage too)."""
    st = lambda e, h, m, rem=(1,): StageChoices(embed_dims=e, heads=h, head_dim=8, mlp_dims=m, blocks=3, removable=rem)
    stages = (st((8, 16), (1, 2), (16, 32)), st((16, 24), (1, 3), (16, 48)), st((24, 32), (2, 4), (32, 64), (1, 2)))
    space = ResNASSpace(patch=patch, stem_channels=stem, residual=residual, stages=stages, img_size=img_size,
                        in_chans=1, num_classes=10, **over)
    space.check()
    return space


def default_space() -> ResNASSpace:
    """The proposed embedded default: 28 px Fashion-MNIST, patch 4, an 8-channel stem."""
    st = lambda e, h, m: StageChoices(embed_dims=e, heads=h, head_dim=16, mlp_dims=m, blocks=3, removable=(1, 2))
    return ResNASSpace(patch=4, stem_channels=8, residual=True, img_size=28, in_chans=1, num_classes=10, stages=(
        st((8, 16, 24, 32, 40), (1, 2), (16, 32, 64, 96)),
        st((40, 48, 64, 80), (1, 2, 3), (32, 64, 128, 192)),
        st((80, 96, 128, 160), (2, 3, 4), (64, 128, 256, 384))))


def perturbed(space: ResNASSpace, drop_path: float = 0.0) -> ResNASSupernet:
    """A float64 supernet in eval mode whose norms, biases and BatchNorm statistics are
    non-trivial, so that a slicing error cannot hide behind ones and zeros."""
    torch.manual_seed(0)
    return perturb_(ResNASSupernet(space, drop_path).double()).eval()


def archs_with_skips(space: ResNASSpace, n: int, seed: int = 0) -> list[Arch]:
    rng = random.Random(seed)
    archs = [space.sample(rng, 0.5) for _ in range(n)] + [space.smallest(), space.largest()]
    assert any(a.depth < space.max_depth for a in archs)
    return archs


# ------------------------------------------------------------------------------------------ counting
@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_macs_and_params(name):
    arch = config_arch(name)
    spec = json.loads((REPO / "config" / "archs" / f"{name}.json").read_text())
    assert spec["input"] == {"img_size": 224, "in_chans": 3, "num_classes": 1000} and spec["source"]
    exact, paper, n_params = RELEASED[name]
    for convention in ("timm", "resnas"):
        assert macs(arch, 224, 3, 1000, convention) == exact
    assert abs(exact - paper) <= 1e-3 * paper and round(exact / 1e9, 4) == paper / 1e9
    assert params(arch, 224, 3, 1000) == n_params
    assert families.count(arch, 224, 3, 1000, "resnas")["macs"] == exact


@pytest.mark.parametrize("residual, stem, img_size", [(True, 0, 28), (True, 4, 32), (False, 4, 28),
                                                       (False, 0, 28), (False, 4, 32)])
def test_analytic_macs_and_params_match_the_model(residual, stem, img_size):
    """Beyond the default space (test_family_contract.py): without a stem, with plain reduction,
    and at 32 px, whose grids are even (28 px gives odd 7x7 and 4x4 ones: the reductions' ceil)."""
    space = make_space(residual, stem, img_size)
    x = torch.randn(1, 1, img_size, img_size)
    torch.manual_seed(0)
    for arch in archs_with_skips(space, 3):
        model = resnas.build_model(arch, space).eval()
        model.set_fused_attn(False)
        assert traced_macs(model, x) == space.macs(arch) == space.macs(arch, "resnas")
        assert sum(p.numel() for p in model.parameters()) == space.params(arch)


# ---------------------------------------------------------------------------------------- supernet
@pytest.mark.parametrize("residual, stem", [(True, 0), (False, 4), (False, 0)])
def test_export_equivalence(residual, stem):
    """Beyond the default space (test_family_contract.py): without a stem, with plain reduction;
    in float64, so a slicing error cannot hide in rounding."""
    net = perturbed(make_space(residual, stem))
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    for arch in archs_with_skips(net.space, 5):
        model = export(net, arch).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x, arch), model(x), rtol=0, atol=1e-10)


def test_export_keys_and_drop_path():
    space = make_space()
    net = resnas.build_supernet(space, {"drop_path": 0.4, "patch_mixup": False, "resort_at_warmup_end": False})
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for s in net.stages for b in s.blocks]
    assert rates == pytest.approx([0.4 * i / 8 for i in range(9)])  # over every position
    state = export(net.eval(), space.largest()).state_dict()
    assert {"stem.bn1.running_mean", "patch_embed.weight", "stages.1.reduce.conv.weight",
            "stages.2.blocks.2.attn.qkv.weight", "head.weight"} <= set(state)


def test_multi_arch_batch_refuses_uneven_splits_and_other_layouts():
    net = perturbed(make_space())
    archs = archs_with_skips(net.space, 2, seed=3)[:3]
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    with pytest.raises(ValueError, match="sub-batches"):
        net(x[:5], archs)
    short = config_arch("vit-resnas-tiny")  # 5 layers in its first stage, not 3
    with pytest.raises(ValueError, match="layers per stage"):
        net(x, short)


def test_multi_arch_gradients_equal_summed_single_passes():
    """One forward-backward over k sub-batches gives the gradients of k separate passes. In eval
    mode: in training mode the stem's BatchNorm would normalise the joint batch with its own
    statistics and each separate pass with a sub-batch's, so the two would differ by design."""
    net = perturbed(make_space())
    archs = archs_with_skips(net.space, 2, seed=5)[:3]
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    net.zero_grad()
    F.cross_entropy(net(x, archs), y, reduction="sum").backward()
    joint = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in net.named_parameters()}
    net.zero_grad()
    for xi, yi, arch in zip(x.split(2), y.split(2), archs):
        F.cross_entropy(net(xi, arch), yi, reduction="sum").backward()  # accumulates
    for n, p in net.named_parameters():
        torch.testing.assert_close(joint[n], p.grad if p.grad is not None else torch.zeros_like(p),
                                   rtol=1e-9, atol=1e-12, msg=n)


def test_epoch_hook_resorts_during_warm_up_only():
    net = perturbed(make_space())
    state = lambda: {k: v.clone() for k, v in net.state_dict().items()}
    before = state()
    net.on_epoch_start(1, None, 1.0)  # warm-up over: nothing moves
    assert all(torch.equal(v, before[k]) for k, v in state().items())
    net.on_epoch_start(0, None, 1.0)
    assert any(not torch.equal(v, before[k]) for k, v in state().items())


def test_resort_keeps_the_largest_network_and_export_equivalence():
    net = perturbed(make_space())
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    largest = net.space.largest()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    F.cross_entropy(net(x, largest), torch.tensor([0, 1])).backward()
    opt.step()  # creates AdamW's moments; make them functions of the weights to follow them
    with torch.no_grad():
        for p in net.parameters():
            opt.state[p]["exp_avg"].copy_(2 * p)
            opt.state[p]["exp_avg_sq"].copy_(p * p)
    with torch.no_grad():
        before = net(x, largest)
    block = net.stages[0].blocks[0]
    fc1_before = block.fc1.weight.clone()
    net.resort_(opt)
    assert not torch.equal(fc1_before, block.fc1.weight)  # something moved
    score = block.fc1.weight.abs().sum(1) + block.fc1.bias.abs() + block.fc2.weight.abs().sum(0)
    assert torch.all(score[:-1] >= score[1:])  # MLP units now by descending importance
    for p in net.parameters():
        torch.testing.assert_close(opt.state[p]["exp_avg"], 2 * p.detach(), rtol=0, atol=0)
        torch.testing.assert_close(opt.state[p]["exp_avg_sq"], p.detach() ** 2, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(net(x, largest), before, rtol=0, atol=1e-10)
        for arch in archs_with_skips(net.space, 4):
            torch.testing.assert_close(net(x, arch), export(net, arch).eval()(x), rtol=0, atol=1e-10)


def test_unlocking():
    space = make_space()
    early = space.unlocked(0, 30)
    assert all(st.embed_dims == (s.embed_dims[-1],) and st.heads == (s.heads[-1],) and st.mlp_dims == (s.mlp_dims[-1],)
               for st, s in zip(early.stages, space.stages))
    rng = random.Random(0)
    assert all(a.stages[0].embed == 16 and all(l.mlp == 32 for l in a.stages[0].layers)
               for a in (early.sample(rng) for _ in range(20)))
    assert space.unlocked(29.9, 30).stages[0].mlp_dims == (32,)  # K = 2: the second choice only at the end
    # K = 7 (the released MLP lists) over 30 epochs: one more choice every 5 epochs.
    wide = replace(space, stages=(replace(space.stages[0], mlp_dims=tuple(range(1, 8))),) + space.stages[1:])
    assert [len(wide.unlocked(e, 30).stages[0].mlp_dims) for e in (0, 4.9, 5, 29, 30)] == [1, 1, 2, 6, 7]
    assert space.unlocked(30, 30) is space and space.unlocked(3, 0) is space


# ------------------------------------------------------------------------------------------- space
def test_identities_only_at_removable_positions():
    space = make_space()
    rng = random.Random(2)
    archs = [space.sample(rng, p) for p in (0.0, 0.3, 0.7, 1.0) for _ in range(30)]
    children = [space.mutate(a, rng, 0.5) for a in archs]
    children += [space.crossover(rng.choice(archs), rng.choice(archs), rng) for _ in range(100)]
    for a in archs + children:
        assert space.contains(a), a
        for stage, st in zip(a.stages, space.stages):
            assert all(i in st.removable for i, l in enumerate(stage.layers) if l.identity)
    assert all(a.depth == space.max_depth for a in archs[:30])  # identity_prob 0
    assert all(a.depth == space.min_depth for a in archs[90:])  # identity_prob 1


def test_depth_sampling_respects_max_depth():
    space = make_space(sampling="depth")
    rng = random.Random(0)
    depths = {space.sample(rng, max_depth=space.min_depth + 1).depth for _ in range(100)}
    assert depths == {space.min_depth, space.min_depth + 1}
    assert all(space.contains(space.sample(rng)) for _ in range(20))


def test_positions_are_kept_and_identity_choices_ignored():
    space = make_space()
    arch = space.largest()
    stages = list(arch.stages)
    skip = lambda i, l: replace(l, identity=True, heads=1, qkv=8) if i == 1 else l
    a = replace(arch, stages=(replace(stages[0], layers=tuple(skip(i, l) for i, l in enumerate(stages[0].layers))),
                              *stages[1:]))
    b = replace(a, stages=(replace(a.stages[0], layers=tuple(replace(l, heads=2, qkv=16) if l.identity else l
                                                             for l in a.stages[0].layers)), *stages[1:]))
    assert space.key(a) == space.key(b) and space.canonical(a) is a
    assert space.contains(a)
    moved = replace(a, stages=(replace(a.stages[0], layers=a.stages[0].shifted().layers), *stages[1:]))
    assert space.key(moved) != space.key(a) and not space.contains(moved)  # identity at position 2


@pytest.mark.parametrize("over, key", [
    (dict(img_size=30), "space.patch"),
    (dict(patch=7, img_size=28), "space.patch"),
])
def test_check_names_the_key(over, key):
    with pytest.raises(SpaceError, match=key):
        make_space(**over)


def test_check_removable_and_widths():
    space = make_space()
    bad = replace(space, stages=(replace(space.stages[0], removable=(3,)),) + space.stages[1:])
    with pytest.raises(SpaceError, match=r"space.stages\[0\].removable"):
        bad.check()
    narrow = replace(space, stages=space.stages[:1] + (replace(space.stages[1], embed_dims=(8, 24)),) + space.stages[2:])
    with pytest.raises(SpaceError, match=r"space.stages\[1\].embed_dims"):
        narrow.check()
    replace(narrow, residual=False).check()  # plain reduction: any widths


def test_window_helpers_agree_with_samples():
    space = make_space()
    rng = random.Random(0)
    archs = [space.sample(rng, 0.5) for _ in range(400)]
    lo, hi = sorted(space.macs(a) for a in archs)[50], sorted(space.macs(a) for a in archs)[80]
    inside = [a for a in archs if lo <= space.macs(a) <= hi]
    deepest, usable = space.deepest_in_window(lo, hi), set(space.usable_layers(lo, hi))
    assert inside and max(a.depth for a in inside) <= deepest
    for a in inside:
        flat = [l for s in a.stages for l in s.layers]
        assert {i for i, l in enumerate(flat) if not l.identity} <= usable
    assert len(space.layer_slots()) == space.max_depth and space.layer_slots()[3] == "s1.l0"
    assert space.deepest_in_window(1, 2) == 0 and space.usable_layers(1, 2) == []
    big = space.macs(space.largest())
    assert space.deepest_in_window(big, big) == space.max_depth
    assert space.usable_layers(0, big) == list(range(space.max_depth))
    usage = space.usage(archs[:20])
    assert set(usage["choices"]) == {"embed0", "embed1", "embed2", "heads", "mlp"}


def test_baseline_lies_in_its_window_and_fails_in_one_line():
    space = default_space()
    for budget, c in (("2M", 2e6), ("4M", 4e6)):
        arch = design_baseline(space, budget, {"blocks": 2, "mlp_ratio": 4}, 0.975)
        assert 0.975 * c <= space.macs(arch) <= c
        assert [s.embed for s in arch.stages] == [arch.stages[0].embed * 2 ** s for s in range(3)]
        assert all(len(s.layers) == 3 and s.depth == 2 for s in arch.stages)  # padded at removable positions
    torch.manual_seed(0)
    model = resnas.build_model(arch, space)
    assert sum(p.numel() for p in model.parameters()) == space.params(arch)
    odd = design_baseline(space, "4M", {"blocks": 4, "mlp_ratio": 4}, 0.0)  # more blocks than positions
    assert all(len(s.layers) == 4 and s.depth == 4 for s in odd.stages)
    for budget, fraction in (("10K", 0.0), ("4M", 0.9999)):
        with pytest.raises(SpaceError, match="space.baseline") as e:
            design_baseline(space, budget, {"blocks": 2, "mlp_ratio": 4}, fraction)
        assert "\n" not in str(e.value)


def test_default_space_windows_hold_networks():
    space = default_space()
    lo, hi = space.macs_range()
    assert lo < 1.5e6 and hi > 6e6
    rng = random.Random(0)
    for c in (2e6, 4e6):
        assert space.contains(space.sample_within(rng, 0.975 * c, c, tries=5000))


# ------------------------------------------------------------------------------------------- model
def test_forward_intermediates_shapes_and_strides():
    space = make_space(img_size=32)
    arch = space.largest()
    torch.manual_seed(0)
    model = resnas.build_model(arch, space).eval()
    info = model.feature_info
    assert [f["reduction"] for f in info] == [4] * 3 + [8] * 3 + [16] * 3
    assert [f["num_chs"] for f in info] == [16] * 3 + [24] * 3 + [32] * 3
    for size in (32, 64):  # 64: another input size (position embeddings resampled)
        x = torch.randn(2, 1, size, size)
        with torch.no_grad():
            feats, maps = model.forward_intermediates(x, indices=[0, 4, 8])
            last = model.forward_intermediates(x, indices=2, intermediates_only=True, norm=True)
        for m, i in zip(maps, (0, 4, 8)):
            assert m.shape == (2, info[i]["num_chs"], size // info[i]["reduction"], size // info[i]["reduction"])
        assert len(last) == 2
        torch.testing.assert_close(last[-1], feats[:, 1:].transpose(1, 2).reshape(last[-1].shape))
        with torch.no_grad():
            torch.testing.assert_close(model(x), model.forward_head(feats))
    with torch.no_grad():
        maps = model.forward_intermediates(torch.randn(1, 1, 28, 28), intermediates_only=True)
    assert [m.shape[-1] for m in maps] == [2]  # 7 -> 4 -> 2: odd grids reduce with ceil


def test_arms_and_switches():
    """(Torch-free and complete: test_family_contract.py.)"""
    assert set(resnas.ARMS) == {"full", "plain_sr", "one_arch", "no_unlocking"}
    assert resnas.SWITCHES == ("archs_per_batch", "warmup_epochs")
    assert families.get("resnas").Space is ResNASSpace


def test_stand_alone_model_rejects_narrowing_residual():
    arch = Arch(patch=4, family="resnas", stages=(Stage(16, (Layer(1, 8, 16),)), Stage(8, (Layer(1, 8, 16),))))
    with pytest.raises(ValueError, match="non-decreasing"):
        ResNASViT(arch, 28, 1, 10, residual=True)
    ResNASViT(arch, 28, 1, 10, residual=False)
