"""The family contract (vitnas.families.contract), one test per check, run over every family in
`families.names()` and over a tests-only toy CNN family (tests/toyfamily) registered in a fixture:
export equivalence, one MACs counter, parameters, the space's operators, the timm forward
interface and the declared switches. The real families run on their default (tiny, 28 px)
config's space; family-specific checks (published counts, switches, sharing) stay in their files."""
import math
import random
import subprocess
import sys
import types
from pathlib import Path

import pytest
import timm.layers
import torch

import toyfamily
from conftest import perturb_, traced_macs
from vitnas import config, families, spaces
from vitnas.arch import Arch
from vitnas.families import contract
from vitnas.errors import SpaceError
from vitnas.families import build_space
from vitnas.spaces import Sampler
from vitnas.supernet.base import Supernet
from vitnas.supernet.train import step_archs

TESTS = Path(__file__).resolve().parent
FAMILIES = (*families.names(), "toy")
EPS = torch.finfo(torch.float32).eps


def register_toy(monkeypatch) -> None:
    """The toy family by name: its package (with its space.schema.yaml) and one `register` call,
    nothing else; the registry is restored afterwards."""
    monkeypatch.setattr(families, "_PACKAGES", dict(families._PACKAGES))
    monkeypatch.setattr(families, "_SCHEMAS", dict(families._SCHEMAS))
    families.register("toy", toyfamily)


def tiny_space(name: str):
    """The family's space of the default config, through the config and the registry like any
    family's (the toy's at 12 px)."""
    data = {"img_size": 12} if name == "toy" else {}
    return build_space(config.validate({"data": data, "space": {"family": name}}))


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    """(package, space, supernet in eval mode, perturbed)."""
    with pytest.MonkeyPatch.context() as mp:
        register_toy(mp)
        package = families.get(request.param)
        space = tiny_space(request.param)
        torch.manual_seed(0)
        net = perturb_(package.build_supernet(space, config.validate({})["supernet"]))
        yield types.SimpleNamespace(name=request.param, package=package, space=space, net=net.eval())


def archs(space, n: int = 4, seed: int = 0) -> list[Arch]:
    rng = random.Random(seed)
    return [space.sample(rng, 0.4) for _ in range(n)] + [space.smallest(), space.largest()]


def images(space, n: int = 2) -> torch.Tensor:
    return torch.randn(n, space.in_chans, space.img_size, space.img_size, generator=torch.Generator().manual_seed(1))


def assert_float32_close(actual: torch.Tensor, expected: torch.Tensor, depth: int) -> None:
    """Equal up to float32 rounding: a few eps per layer, relative to the logits' scale (two
    computations of one network differ only in how their kernels order the sums)."""
    tol = 8 * EPS * (depth + 2) * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=tol)


def test_every_family_is_covered():
    assert set(FAMILIES) == {"vit", "resnas", "twins", "macro", "toy"}


def test_package_is_torch_free_and_complete(family):
    """The package's top level imports without torch and passes `contract.check`."""
    module = family.package.__name__
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import importlib; "
            "from vitnas.families import contract; "
            f"contract.check(importlib.import_module({module!r})); assert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert isinstance(family.net, Supernet) and family.net.space is family.space
    assert family.space.family == family.name


def test_export_equivalence(family):
    """supernet(x, arch) == export(supernet, arch)(x), float32; export returns eval mode, from a
    supernet in either mode, so a caller who forgets `.eval()` gets the same logits."""
    x = images(family.space)
    for arch in archs(family.space):
        model = family.package.export(family.net.train(), arch)
        family.net.eval()
        assert not any(m.training for m in model.modules())
        with torch.no_grad():
            assert_float32_close(model(x), family.net(x, arch), arch.depth)


def test_a_batch_of_archs_is_one_sub_batch_each(family):
    x, (a, b) = images(family.space, 4), archs(family.space, 2)[:2]
    with torch.no_grad():
        together = family.net(x, [a, b])
        assert_float32_close(together, torch.cat([family.net(x[:2], a), family.net(x[2:], b)]), max(a.depth, b.depth))


def test_traced_macs_and_params_equal_the_analytic_counts(family, monkeypatch):
    """What torch.utils.flop_counter measures on the exported model (FLOPs / 2; explicit-matmul
    attention, which it can see) is the analytic count; parameters too."""
    monkeypatch.setattr(timm.layers.config, "_USE_FUSED_ATTN", timm.layers.config._USE_FUSED_ATTN)  # restored after
    timm.layers.set_fused_attn(False)
    x = images(family.space, 1)
    for arch in archs(family.space):
        model = family.package.export(family.net, arch).eval()
        with torch.no_grad():
            assert traced_macs(model, x) == family.space.macs(arch)
        assert sum(p.numel() for p in model.parameters()) == family.space.params(arch)
        assert family.package.macs(arch, family.space.img_size, family.space.in_chans,
                                   family.space.num_classes) == family.space.macs(arch)


def test_sample_mutate_crossover_stay_in_the_space(family):
    space = family.space
    rng = random.Random(2)
    drawn = [space.sample(rng, p) for p in (0.0, 0.3, 0.7, 1.0) for _ in range(10)]
    again = random.Random(2)
    assert [space.sample(again, p) for p in (0.0, 0.3, 0.7, 1.0) for _ in range(10)] == drawn
    children = [space.mutate(a, rng, 0.5) for a in drawn]
    children += [space.crossover(rng.choice(drawn), rng.choice(drawn), rng, kind)
                 for kind in ("uniform", "two_point", None) for _ in range(10)]
    lo, hi = space.macs_range()
    for a in drawn + children + [space.smallest(), space.largest()]:
        assert space.contains(a) and a.family == family.name, a
        assert a.depth >= space.min_depth and lo <= space.macs(a) <= hi
        canonical = space.canonical(a)
        assert space.canonical(canonical) == canonical and space.key(canonical) == space.key(a)
        assert Arch.from_json(a.to_json()) == a
    assert space.mutate(drawn[5], rng, 0.0) == drawn[5]
    assert space.mutate(drawn[5], random.Random(7), 0.5) == space.mutate(drawn[5], random.Random(7), 0.5)
    assert len({space.key(a) for a in drawn}) > 1


def test_sample_within_a_window(family):
    space, rng = family.space, random.Random(0)
    budget = space.macs(space.sample(rng))
    for _ in range(10):
        assert 0.9 * budget <= space.macs(space.sample_within(rng, 0.9 * budget, budget)) <= budget
    slots = space.layer_slots()
    assert 1 <= space.deepest_in_window(0.9 * budget, budget) <= len(slots)
    assert set(space.usable_layers(0.9 * budget, budget)) <= set(range(len(slots)))
    assert space.deepest_in_window(1, 2) == 0 and space.usable_layers(1, 2) == []  # a window below the space


def test_timm_forward_interface(family):
    """The stand-alone model: logits of num_classes, feature_info, forward_intermediates' maps at
    their strides, and forward_features / forward_head composing to forward."""
    space = family.space
    torch.manual_seed(0)
    model = contract.check_model(family.package.build_model(space.largest(), space).eval())
    assert model.in_chans == space.in_chans
    info = model.feature_info
    assert info and all({"num_chs", "reduction", "module"} <= set(f) for f in info)
    x = images(space)
    with torch.no_grad():
        logits = model(x)
        feats, maps = model.forward_intermediates(x, indices=len(info))
        last = model.forward_intermediates(x, intermediates_only=True)
        features = model.forward_features(x)
        head = model.forward_head(features)
    assert logits.shape == (2, space.num_classes)
    assert [tuple(m.shape) for m in maps] == [(2, f["num_chs"], math.ceil(space.img_size / f["reduction"]),
                                               math.ceil(space.img_size / f["reduction"])) for f in info]
    assert len(last) == 1
    torch.testing.assert_close(last[0], maps[-1])
    torch.testing.assert_close(feats, features)
    torch.testing.assert_close(head, logits)


def test_declared_switches_and_claims(family):
    p = family.package
    supernet_keys = set(config.validate({})["supernet"])
    assert set(p.SWITCHES) <= supernet_keys and set(p.IGNORES) <= supernet_keys
    assert not set(p.SWITCHES) & set(p.IGNORES)
    assert next(iter(p.ARMS)) == "full" and set(p.CLAIMS) <= set(p.ARMS) - {"full"}
    assert all(isinstance(claim, str) and isinstance(search, bool) for claim, search in p.CLAIMS.values())
    assert isinstance(p.BASELINE_NAME, str) and p.BASELINE_NAME


def test_registered_toy_family_is_reached_by_name(monkeypatch):
    register_toy(monkeypatch)
    assert families.get("toy") is toyfamily
    space = tiny_space("toy")
    arch = families.design_baseline({"space": {"baseline": {}}, "search": {"min_budget_fraction": 0.5}}, space,
                                    str(space.macs(space.largest())))
    assert arch == space.largest()
    assert families.count(arch, 12, 1, 10)["macs"] == space.macs(arch)


def test_default_hooks_do_nothing():
    """A family without progressive unlocking or re-sorting: warm-up draws from the whole space,
    and the epoch hook leaves the weights as they are."""
    space = tiny_space("toy")
    assert space.unlocked(0.0, 1.0) is space
    draw = Sampler(space, 0.5, None)
    cfg = lambda warmup: {"seed": 0, "supernet": {"archs_per_batch": 2, "warmup_epochs": warmup,
                                                  "unlock_per_epoch": False}}
    assert [step_archs(cfg(1), draw, s) for s in range(4)] == [step_archs(cfg(0), draw, s) for s in range(4)]
    # A step's k networks: each drawn alone, from its own generator.
    assert space.sample_many([random.Random(1), random.Random(2)]) == [space.sample(random.Random(i)) for i in (1, 2)]
    with pytest.raises(SpaceError, match="search.init: shrink .* toy family"):
        space.sample_shrunk(random.Random(0), 0, space.macs(space.largest()))
    torch.manual_seed(0)
    net = toyfamily.build_supernet(space, {})
    assert net.patch_grid is None  # no patch head: supernet.patch_mixup changes nothing
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.on_epoch_start(0, None, 1.0)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_check_names_the_missing_piece():
    lacking = types.ModuleType("lacking")
    lacking.__dict__.update({k: v for k, v in vars(toyfamily).items() if k != "CLAIMS" and not k.startswith("__")})
    with pytest.raises(TypeError, match="family lacking lacks CLAIMS; see vitnas.families.contract.Family"):
        contract.check(lacking)
    lacking.CLAIMS = {}
    contract.check(lacking)
    lacking.Space = type("Bare", (spaces.Space,), {"family": "lacking"})
    with pytest.raises(TypeError, match="lacking's Space lacks img_size; see vitnas.families.contract.FamilySpace"):
        contract.check(lacking)
    lacking.Space = object
    with pytest.raises(TypeError, match="must subclass vitnas.spaces.Space"):
        contract.check(lacking)
    with pytest.raises(TypeError, match="Linear lacks in_chans; see vitnas.families.contract.Model"):
        contract.check_model(torch.nn.Linear(1, 1))
