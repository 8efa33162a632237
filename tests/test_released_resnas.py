"""The released ViT-ResNAS search and schedule (yilunliao/vit-search at 303e7c3), each a switch
whose default is the earlier behaviour: one hand-checked case per item (issue 17 section 2)."""
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from test_resnas import make_space, perturbed
from vitnas import checks, config, families
from vitnas.batches import TrainBatches
from vitnas.data import STATS, Split
from vitnas.families import resnas
from vitnas.families.resnas.space import RELEASED_SKIPS
from vitnas.families.resnas.supernet import export
from vitnas.patch_mixup import PatchMixup, PatchMixupLoss, cell_box
from vitnas.search import ScoreCache, evolve
from vitnas.errors import SpaceError
from vitnas.families import build_space
from vitnas.spaces import Sampler
from vitnas.supernet.multi import merge_batch, split_batch
from vitnas.supernet.train import step_archs

REPO = Path(__file__).resolve().parents[1]


def skip_share(space, epoch: float, warmup: float) -> float:
    """The probability that a removable block is skipped at `epoch` of progressive unlocking."""
    choices = space.unlocked(epoch, warmup).skip_choices
    return sum(choices) / len(choices)


# ------------------------------------------------------------------------ skip unlocking
def test_skip_unlocking_follows_the_released_schedule_scaled_with_warm_up():
    """120 epochs, warm-up 30 (released): never skipped in epochs 0-19, 1/3 in 20-29, 1/2 from 30;
    a 12-epoch schedule (warm-up 3): 0 in epochs 0-1, 1/3 in epoch 2, 1/2 from epoch 3."""
    space = make_space(skip_choices=RELEASED_SKIPS)
    assert [skip_share(space, e, 30) for e in (0, 9, 10, 19)] == [0, 0, 0, 0]
    assert [skip_share(space, e, 30) for e in (20, 29)] == [1 / 3, 1 / 3]
    assert [skip_share(space, e, 30) for e in (30, 60, 119)] == [1 / 2] * 3
    assert [skip_share(space, e, 3) for e in range(5)] == [0, 0, 1 / 3, 1 / 2, 1 / 2]
    # Switched off (the default), skips come from identity_prob at every epoch.
    assert make_space().unlocked(0, 30).skip_choices is None
    assert any(a.depth < 9 for a in (make_space().unlocked(0, 30).sample(random.Random(s), 0.5) for s in range(5)))


def test_no_block_is_skipped_before_two_thirds_of_the_warm_up():
    space = make_space(skip_choices=RELEASED_SKIPS)
    early, late = space.unlocked(19, 30), space.unlocked(25, 30)
    rng = random.Random(0)
    assert all(early.sample(rng, 0.9).depth == space.max_depth for _ in range(200))
    skipped = [l.identity for _ in range(600) for l in _removable_layers(late, late.sample(rng, 0.0))]
    assert abs(np.mean(skipped) - 1 / 3) < 0.03  # identity_prob (0.0 here) is not read


def _removable_layers(space, arch):
    return [s.layers[i] for s, st in zip(arch.stages, space.stages) for i in st.removable]


def test_unlocking_per_epoch_waits_for_the_epoch_start():
    """Warm-up 30, 5 width choices: at fractional epoch 7.5 (step 15 of 2 per epoch) two widths
    are unlocked (1 + floor(7.5 x 4 / 30) = 2); released unlocking at epoch 7's start has one."""
    st = lambda e, rem=(): resnas.space.StageChoices(embed_dims=e, heads=(1, 2), head_dim=8, mlp_dims=(16, 32),
                                                     blocks=2, removable=rem)
    space = make_space()
    space = replace(space, stages=(st((8, 10, 12, 14, 16)), st((16, 18, 20, 22, 24)), st((24, 26, 28, 30, 32))))
    draw = Sampler(space, 0.5, None)
    cfg = lambda per_epoch: {"seed": 0, "supernet": {"archs_per_batch": 8, "warmup_epochs": 30,
                                                     "unlock_per_epoch": per_epoch}}
    widths = lambda per_epoch: {s.embed for a in step_archs(cfg(per_epoch), draw, 15, 0, 2) for s in a.stages}
    assert widths(True) == {16, 24, 32}
    assert widths(False) == {14, 16, 22, 24, 30, 32}


# ------------------------------------------------------------------------ balanced draws
def test_balanced_draws_never_share_a_value_while_there_are_enough_choices():
    space = make_space(multi_arch_draw="balanced", skip_choices=RELEASED_SKIPS)
    for seed in range(20):
        a, b = space.sample_many([random.Random(seed), random.Random(seed + 100)])
        for sa, sb in zip(a.stages, b.stages):  # 2 choices per dimension, 2 networks: all differ
            assert sa.embed != sb.embed
            assert all(la.heads != lb.heads and la.mlp != lb.mlp for la, lb in zip(sa.layers, sb.layers))
        three = space.sample_many([random.Random(seed + i) for i in range(3)])  # 3 > 2: one value twice
        for s in range(3):
            assert sorted({a.stages[s].embed for a in three}) == list(space.stages[s].embed_dims)
        # Skips are dealt from keep, keep, skip, skip: 4 networks skip a removable block exactly twice.
        four = space.sample_many([random.Random(seed + i) for i in range(4)])
        assert all(sum(a.stages[s].layers[i].identity for a in four) == 2
                   for s, st in enumerate(space.stages) for i in st.removable)


def test_balanced_draws_follow_unlocking_and_independent_draws_are_unchanged():
    space = make_space(multi_arch_draw="balanced")
    early = space.unlocked(0, 30)  # one choice per dimension: every network alike but its skips
    nets = early.sample_many([random.Random(i) for i in range(2)])
    assert nets[0].stages[0].embed == nets[1].stages[0].embed == 16
    rngs = lambda: [random.Random(i) for i in range(2)]
    independent = make_space()
    assert independent.sample_many(rngs()) == [independent.sample(r) for r in rngs()]


def test_sub_batches_are_interleaved_with_balanced_draws():
    x = torch.arange(6)
    assert [p.tolist() for p in split_batch(x, 2, interleave=True)] == [[0, 2, 4], [1, 3, 5]]
    assert torch.equal(merge_batch(list(split_batch(x, 3, interleave=True)), interleave=True), x)
    space = make_space(multi_arch_draw="balanced")
    net = perturbed(space)
    a, b = space.sample_many([random.Random(0), random.Random(1)])
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        out = net(x, [a, b])
        torch.testing.assert_close(out[0::2], net(x[0::2], a), rtol=0, atol=1e-12)
        torch.testing.assert_close(out[1::2], net(x[1::2], b), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------ re-sorting
@pytest.mark.parametrize("warmup, inclusive, epochs", [
    (30, True, list(range(31))), (30, False, list(range(30))), (3, True, [0, 1, 2, 3]), (3, False, [0, 1, 2])])
def test_resorting_runs_at_epochs_zero_to_the_warm_up_end(warmup, inclusive, epochs, monkeypatch):
    net = resnas.build_supernet(make_space(), {"drop_path": 0.0, "patch_mixup": False,
                                               "resort_at_warmup_end": inclusive})
    seen = []
    monkeypatch.setattr(net, "resort_", lambda optimizer=None: seen.append(epoch))
    for epoch in range(4 * warmup):
        net.on_epoch_start(epoch, None, warmup)
    assert seen == epochs


# ------------------------------------------------------------------------ search
class Line:
    """A genome of numbers costing themselves (samples: integers 0..99), whose mutation and
    crossover log their parents; every third mutant lands in the window, each child is new."""

    def __init__(self):
        self.parents, self.calls = [], 0

    def sample(self, rng):
        return rng.randrange(100)

    def sample_within(self, rng, lo, hi):
        return rng.randint(int(lo), int(hi))

    def mutate(self, a, rng, prob):
        self.parents.append((a,))
        self.calls += 1
        return 500 if self.calls % 3 else 40 + self.calls / 1000  # two misses, then a new hit

    def crossover(self, a, b, rng, kind=None):
        self.parents.append((a, b))
        return 50 + len(self.parents) / 1000

    key = staticmethod(lambda a: a)
    cost = staticmethod(lambda a: a)
    params = staticmethod(lambda a: a)
    as_json = staticmethod(lambda a: a)


def run_line(**switches):
    genome = Line()
    cfg = {"min_budget_fraction": 0.4, "population": 6, "generations": 2, "parents": 6, "mutations": 4,
           "crossovers": 0, "mutation_prob": 0.3, "crossover": None} | switches
    evolve(genome, ScoreCache(lambda a: float(a), genome), "x", 60, cfg, seed=0)
    return genome


def test_mutation_retries_keep_the_parent():
    """Every child takes three mutations (two land outside the window): from one parent with
    retry_parents: same, from freshly drawn parents otherwise."""
    triples = lambda g: [g.parents[i:i + 3] for i in range(0, len(g.parents), 3)]
    assert all(len(set(t)) == 1 for t in triples(run_line(retry_parents="same")))
    assert any(len(set(t)) > 1 for t in triples(run_line()))


def test_shrinking_needs_a_family_space():
    with pytest.raises(SpaceError, match="search.init: shrink needs a family's space"):
        run_line(init="shrink")


def test_crossover_parents_are_distinct():
    pairs = lambda g: [p for p in g.parents if len(p) == 2]
    assert all(a != b for a, b in pairs(run_line(mutations=0, crossovers=20, parents=2, crossover_parents="distinct")))
    assert any(a == b for a, b in pairs(run_line(mutations=0, crossovers=20, parents=2)))


def tiny_block_space():
    """One stage of one fixed block (width 8; heads 1 or 2 of 8 channels; MLP 16 or 32)."""
    st = resnas.space.StageChoices(embed_dims=(8,), heads=(1, 2), head_dim=8, mlp_dims=(16, 32), blocks=1)
    return replace(make_space(), stages=(st,))


def test_initial_population_shrinks_heads_and_mlp_from_their_maximum_into_the_budget():
    """Hand-checked: from heads 2 / MLP 32, one step down of the heads lands in the window
    [0.975 C, C] with C = MACs(heads 1, MLP 32); a step down of the MLP (heads 2 / MLP 16) is still
    over C, and the next step (heads 1 / MLP 16) is under 0.975 C, so the draw starts again."""
    space = tiny_block_space()
    net = lambda h, m: space._assemble([8], {(0, 0): [h, m, False]})
    hi = space.macs(net(1, 32))
    lo = 0.975 * hi
    assert space.macs(net(2, 16)) > hi and space.macs(net(1, 16)) < lo < hi < space.macs(net(2, 32))
    assert {space.sample_shrunk(random.Random(s), lo, hi) for s in range(20)} == {net(1, 32)}


def test_initial_population_keeps_more_heads_and_mlp_at_their_maximum_than_a_trained_draw():
    """In a window at 70 % of the space's MACs range, about 2/3 of the blocks drawn by shrinking
    keep heads and MLP both at their maximum, against about 3/8 of the blocks of in-window draws
    as trained (uniform choices, rejected until in the window)."""
    space = make_space()
    fewest, most = space.macs_range()
    hi = fewest + 0.7 * (most - fewest)
    lo = 0.975 * hi
    rng = random.Random(0)
    shrunk = [space.sample_shrunk(rng, lo, hi) for _ in range(200)]
    sampled = [space.sample_within(rng, lo, hi, 0.5) for _ in range(200)]
    assert all(lo <= space.macs(a) <= hi and space.contains(a) for a in shrunk)
    at_max = lambda archs: np.mean([l.heads == st.heads[-1] and l.mlp == st.mlp_dims[-1]
                                    for a in archs for s, st in zip(a.stages, space.stages) for l in s.blocks])
    assert at_max(shrunk) > 0.6 and at_max(sampled) < 0.45


def test_evolution_draws_its_initial_population_by_shrinking():
    space = make_space()
    c = space.macs(space.largest()) * 0.6
    cfg = config.validate({"search": {"population": 6, "generations": 1, "parents": 3, "mutations": 2,
                                      "crossovers": 2, "min_budget_fraction": 0.975, "init": "shrink",
                                      "retry_parents": "same", "crossover_parents": "distinct"}})["search"]
    history = evolve(space, ScoreCache(lambda a: float(space.params(a) % 97), space), "c", c, cfg, 0,
                     Sampler(space, 0.5, None))
    first = [r for r in history if r["generation"] == 0]
    rng = random.Random("0-evolution-c")
    assert first[0]["arch"] == json.dumps(space.sample_shrunk(rng, 0.975 * c, c).to_dict(), separators=(",", ":"))
    assert all(0.975 * c <= r["macs"] <= c for r in history)


# ------------------------------------------------------------------------ patch head and mixup
def test_cell_box_as_released():
    """grid 4, lam 0.5: 8 cells; height drawn in [1, 3) -> 2, width 8 // 2 = 4 (the whole row),
    top in [0, 2) -> 1, left in [0, 0) read as [0, 1) -> 0; lam = 1 - 8 / 16."""
    class Stub:
        def __init__(self):
            self.asked = []

        def beta(self, a, b):
            return 0.5

        def integers(self, low, high):
            self.asked.append((low, high))
            return {(1, 3): 2, (0, 2): 1, (0, 1): 0}[low, high]

    rng = Stub()
    assert cell_box(rng, 4) == (1, 3, 0, 4, 0.5)
    assert rng.asked == [(1, 3), (0, 2), (0, 1)]


def test_patch_mixup_labels_each_patch_by_the_image_it_shows():
    """Four constant images (value = label) on a 2 x 2 grid of 4-pixel cells: in the first half a
    pasted cell shows the partner's value and carries its label; in the second half the images
    are mixed and every patch carries the mixed label."""
    grid, classes = 2, 4
    y = torch.arange(4)
    x = y.float().view(4, 1, 1, 1).repeat(1, 1, 8, 8)
    mixed, (targets, patches) = PatchMixup(grid, classes, 0.0)(x, y, np.random.default_rng(3))
    assert patches.shape == (4, grid * grid, classes) and torch.allclose(targets.sum(1), torch.ones(4))
    for b in range(2):
        for cell in range(grid * grid):
            r, c = divmod(cell, grid)
            shown = mixed[b, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
            assert (shown == shown[0, 0]).all() and patches[b, cell].tolist() == torch.eye(classes)[int(shown[0, 0])].tolist()
        torch.testing.assert_close(targets[b], patches[b].mean(0))  # lam = the own cells' share
    for b in range(2, 4):
        value = mixed[b, 0, 0, 0]
        assert (mixed[b] == value).all()
        torch.testing.assert_close(patches[b], targets[b].expand(grid * grid, classes))
        torch.testing.assert_close((targets[b] * torch.arange(4.0)).sum(), value)  # the label mixes as the pixels


def test_patch_mixup_loss_adds_the_patch_term():
    logits, patches = torch.zeros(2, 5), torch.zeros(2, 3, 5)
    targets, patch_targets = torch.eye(5)[:2], torch.eye(5)[:3].expand(2, 3, 5)
    assert PatchMixupLoss()((logits, patches), (targets, patch_targets)).item() == pytest.approx(2 * np.log(5))


def test_patch_head_trains_and_stays_out_of_the_export():
    space = make_space(multi_arch_draw="balanced")
    torch.manual_seed(0)
    net = resnas.build_supernet(space, {"drop_path": 0.0, "patch_mixup": True, "resort_at_warmup_end": False})
    assert net.patch_grid == 2  # 28 px: stem 14, patch 7 x 7 tokens, then 4 x 4, then 2 x 2
    a, b = space.sample_many([random.Random(0), random.Random(1)])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 28, 28), dtype=np.uint8)
    batches = TrainBatches(Split(images, rng.integers(0, 10, 8), *STATS["fashion_mnist"]), 4,
                           config.validate({})["supernet"]["augment"], 28, 10, seed=1, patch_grid=net.patch_grid)
    x, y = batches.get(0)
    logits, patch_logits = net.train()(x, [a, b])
    assert logits.shape == (4, 10) and patch_logits.shape == (4, 4, 10)
    batches.criterion((logits, patch_logits), y).backward()
    assert net.patch_head.weight.grad.abs().sum() > 0
    net.eval()
    model = export(net, a)
    assert not [k for k in model.state_dict() if "patch" in k and "embed" not in k]
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x, a), rtol=0, atol=1e-5)


def test_without_the_switch_the_supernet_draws_its_weights_as_before():
    torch.manual_seed(0)
    plain = resnas.build_supernet(make_space(), {"drop_path": 0.0, "patch_mixup": False, "resort_at_warmup_end": False})
    torch.manual_seed(0)
    with_head = resnas.build_supernet(make_space(), {"drop_path": 0.0, "patch_mixup": True, "resort_at_warmup_end": False})
    assert plain.patch_grid is None and not hasattr(plain, "patch_head")
    shared = with_head.state_dict()
    assert all(torch.equal(v, shared[k]) for k, v in plain.state_dict().items())


def test_the_retrained_model_carries_a_patch_head_only_in_training():
    """retrain.patch_mixup: the stand-alone model built with a patch head draws every other weight
    as without it, returns (logits, patch logits) in training and the logits alone in eval mode;
    dropping the head leaves the keys (and logits) of the model built without it."""
    space = make_space()
    arch = space.largest()
    torch.manual_seed(0)
    plain = families.build_model(arch, space)
    torch.manual_seed(0)
    model = families.build_model(arch, space, patch_head=True)
    assert plain.patch_grid is None and plain.patch_head is None and model.patch_grid == 2  # 28 px: 7, 4, 2
    shared = model.state_dict()
    assert set(shared) - set(plain.state_dict()) == {"patch_head.weight", "patch_head.bias"}
    assert all(torch.equal(v, shared[k]) for k, v in plain.state_dict().items())
    x = torch.randn(3, 1, 28, 28)
    logits, patch_logits = model.train()(x)
    assert logits.shape == (3, 10) and patch_logits.shape == (3, 4, 10)
    torch.testing.assert_close(logits, plain.train()(x), rtol=0, atol=0)  # the stem's BatchNorm statistics move alike
    with torch.no_grad():  # the same weights: the same operations, bit for bit
        assert torch.equal(model.eval()(x), plain.eval()(x))
        model.drop_patch_head()
        assert model.state_dict().keys() == plain.state_dict().keys() and torch.equal(model(x), plain(x))
        assert torch.equal(model.train()(x), plain.train()(x))  # no head: the logits alone in training too
    vit_space = build_space(config.validate({}))
    with pytest.raises(SpaceError, match="the vit family has no patch head; switch retrain.patch_mixup off"):
        families.build_model(vit_space.smallest(), vit_space, patch_head=True)


# ------------------------------------------------------------------------ export mode
def test_export_returns_eval_mode():
    """The stem's BatchNorm on batch statistics would change the logits: export is in eval mode."""
    net = perturbed(make_space())
    arch = make_space().largest()
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    model = export(net.train(), arch)
    assert not model.training
    with torch.no_grad():
        torch.testing.assert_close(model(x), net.eval()(x, arch), rtol=0, atol=1e-10)
        assert not torch.allclose(model.train()(x), net(x, arch))  # what a training-mode export gave


# ------------------------------------------------------------------------ configs
def test_paper_config_turns_the_released_behaviour_on_and_the_default_keeps_it_off():
    paper = config.load(str(REPO / "config" / "config.yaml"), str(REPO / "config" / "imagenet_resnas.yaml"))
    cfg = config.for_space(paper, "resnas_tiny")
    assert {k: cfg["supernet"][k] for k in ("skip_unlock", "multi_arch_draw", "unlock_per_epoch",
                                             "resort_at_warmup_end", "patch_mixup")} == {
        "skip_unlock": True, "multi_arch_draw": "balanced", "unlock_per_epoch": True,
        "resort_at_warmup_end": True, "patch_mixup": True}
    assert cfg["retrain"]["patch_mixup"] is True  # the released retraining scripts too
    checks.check_experiment(paper)  # the paper config passes its own checks with both switches on
    assert {k: cfg["search"][k] for k in ("init", "retry_parents", "crossover_parents")} == {
        "init": "shrink", "retry_parents": "same", "crossover_parents": "distinct"}
    space = build_space(cfg)
    assert space.skip_choices == RELEASED_SKIPS and space.multi_arch_draw == "balanced"
    default = config.for_space(config.load(str(REPO / "config" / "config.yaml")), "resnas")
    assert (default["supernet"]["skip_unlock"], default["supernet"]["multi_arch_draw"],
            default["supernet"]["patch_mixup"], default["search"]["init"]) == (False, "independent", False, "sample")
    assert default["retrain"]["patch_mixup"] is False
    assert build_space(default).skip_choices is None
