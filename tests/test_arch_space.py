"""Architectures and the search space: validity, canonical forms, serialisation, counting."""
import random

import pytest

from vitnas import checks, config
from vitnas.arch import Arch, Layer
from vitnas.families.vit.space import ViTSpace
from vitnas.errors import SpaceError
from vitnas.families import build_space
from vitnas.spaces import parse_macs


def make_space(**over) -> ViTSpace:
    cfg = config.validate({"space": over.pop("space", {}), "supernet": over})
    return build_space(cfg)


def test_operators_stay_in_the_space_without_identity_shifting():
    """The default space's operators are the contract test's (test_family_contract.py); without
    identity shifting identities may sit anywhere, and every network is still in the space."""
    space = make_space(identity_shifting=False)
    rng = random.Random(1)
    archs = [space.sample(rng, p) for p in (0.0, 0.3, 0.5, 0.9) for _ in range(50)]
    children = [space.mutate(a, rng, 0.5) for a in archs]
    children += [space.crossover(rng.choice(archs), rng.choice(archs), rng) for _ in range(200)]
    assert all(space.contains(a) for a in archs + children)
    assert any([l.identity for l in a.layers] != sorted(l.identity for l in a.layers) for a in archs)


def test_identity_probability_is_respected():
    space = make_space(space={"min_depth": 1})
    rng = random.Random(0)
    assert all(space.sample(rng, 0.0).depth == space.max_layers for _ in range(20))
    depths = [space.sample(rng, 0.5).depth for _ in range(2000)]
    assert abs(sum(depths) / len(depths) - 3.0) < 0.15  # 6 layers x 0.5, ignoring min_depth 1


def test_identity_shifting_merges_encodings():
    blk, idle = Layer(2, 32, 64), Layer(4, 64, 128, identity=True)
    a = Arch.single(4, 32, (blk, idle, blk), "vit")
    b = Arch.single(4, 32, (blk, blk, Layer(2, 32, 192, identity=True)), "vit")
    assert a.shifted().layers[:2] == (blk, blk)
    assert a.key(shifting=True) == b.key(shifting=True)
    assert a.key(shifting=False) != b.key(shifting=False)


def test_json_round_trip():
    space = make_space()
    arch = space.sample(random.Random(3))
    assert Arch.from_json(arch.to_json()) == arch
    with pytest.raises(ValueError, match="not an architecture"):
        Arch.from_dict({"patch": 4})
    old = {"patch": 4, "embed": 32, "layers": [{"heads": 2, "qkv": 32, "mlp": 64}]}  # earlier single-stage files
    assert Arch.from_dict(old) == Arch.single(4, 32, (Layer(2, 32, 64),), "vit")


@pytest.mark.parametrize("name, embed, heads, depth, gmacs, mparams", [
    ("DeiT-Ti", 192, 3, 12, 1.2537, 5.72),
    ("DeiT-S", 384, 6, 12, 4.5989, 22.05),
    ("DeiT-B", 768, 12, 12, 17.5638, 86.57),
])
def test_reference_counts(name, embed, heads, depth, gmacs, mparams):
    """timm's DeiT models as torch.utils.flop_counter measures them (unfused attention)."""
    space = ViTSpace((16,), (embed,), depth, 1, (heads,), (embed,), (4 * embed,), 224, 3, 1000)
    arch = Arch.uniform(16, embed, depth, heads, embed, 4 * embed, family="vit")
    assert space.macs(arch) / 1e9 == pytest.approx(gmacs, abs=5e-5)
    assert space.params(arch) / 1e6 == pytest.approx(mparams, abs=5e-3)


def test_budget_outside_range_names_the_range():
    space = make_space()
    lo, hi = space.macs_range()
    assert lo == space.macs(space.smallest()) < hi == space.macs(space.largest())
    with pytest.raises(SpaceError, match=r"outside the vit space's MACs range \[340.9K, 14.26M\]"):
        space.check_budget("100K", parse_macs("100K"))
    with pytest.raises(SpaceError, match="outside"):
        space.check_budget("1G", 1e9)
    space.check_budget("4M", 4e6)


def test_bad_space_is_refused():
    with pytest.raises(SpaceError, match="3 heads do not divide QKV width 32"):
        make_space(space={"heads": [2, 3], "qkv_dims": [32]})
    with pytest.raises(SpaceError, match="does not divide the image size 28"):
        make_space(space={"patch_sizes": [5]})


def test_vitas_conventions_reproduce_the_published_counts():
    """ViTAS's counter (no class token, classifier x196) gives DeiT-Ti 1.284 G and ViTAS-C 1.303 G;
    ViTAS-C's "QKV width 432" counts Q, K and V together: 3 heads x 48 per branch = 144."""
    deit = ViTSpace((16,), (192,), 12, 1, (3,), (192,), (768,), 224, 3, 1000)
    assert deit.macs(Arch.uniform(16, 192, 12, 3, 192, 768, family="vit"), "vitas") / 1e9 == pytest.approx(1.28400, abs=1e-5)
    vitas_c = Arch.uniform(16, 230, 12, 3, 144, 720, family="vit")
    space = ViTSpace((16,), (230,), 12, 1, (3,), (144,), (720,), 224, 3, 1000)
    assert space.macs(vitas_c, "vitas") / 1e9 == pytest.approx(1.30304, abs=1e-5)
    assert space.macs(vitas_c) / 1e9 == pytest.approx(1.2650, abs=5e-4)  # timm's convention


def test_paper_configs_are_valid_and_their_budgets_reachable():
    from conftest import REPO
    for extra in (["imagenet_vitas.yaml"], ["imagenet_vitas.yaml", "imagenet_vitas_large.yaml"]):
        cfg = config.load(str(REPO / "config/config.yaml"), *(str(REPO / "config" / f) for f in extra))
        checks.check_experiment(cfg)
        space = build_space(cfg)
        assert space.img_size == 224 and space.in_chans == 3 and space.num_classes == 1000
        assert set(space.patch_sizes) == {14, 16, 32} and set(space.heads) == {3, 6, 12, 16}


def test_crossover_kinds_take_each_gene_from_a_parent():
    space = make_space()
    rng = random.Random(3)
    a, b = space.sample(rng), space.sample(rng)
    ga, gb = space._genes(a), space._genes(b)
    for kind in ("uniform", "two_point", None):  # None: the family's own (two-point for vit)
        for _ in range(20):
            child = space.crossover(a, b, rng, kind)
            assert space.contains(child) and child.depth >= space.min_depth
            gc = space._genes(child)
            assert len(gc) == len(ga)
            assert all(g in (x, y) for g, x, y in zip(gc, ga, gb)), (gc, ga, gb)
    picks = [space.crossover(a, b, random.Random(s), "uniform") for s in range(10)]
    assert len({space.key(p) for p in picks}) > 1  # seeded draws, not a fixed recombination
    assert space.crossover(a, b, random.Random(0), "uniform") == space.crossover(a, b, random.Random(0), "uniform")
