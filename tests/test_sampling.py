"""Which layers a supernet trains: the per-layer activity of each sampler on fixed seeds, the
untrained-layer warning, and the search window for candidates, the initial population and random
draws. Torch-free."""
import math
import random

import pytest

from vitnas import config
from vitnas.search import ScoreCache, evolve, random_search
from vitnas.families import build_space
from vitnas.spaces import sampler, sampling_record, window
from vitnas.supernet.train import replay_archs, usage_report

STEPS = 4000


def cfg_with(**supernet):
    return config.validate({"supernet": supernet, "search": {"budgets": ["2M", "4M"]}})


def truncated_binomial_reach(n: int, p: float, min_depth: int) -> list[float]:
    """P(depth > i) for the layer-wise sampler under identity shifting: the depth is binomial
    (n, 1 - p) conditioned on at least `min_depth` blocks, and depth d uses layers 0..d-1."""
    pmf = {d: math.comb(n, d) * (1 - p) ** d * p ** (n - d) for d in range(min_depth, n + 1)}
    total = sum(pmf.values())
    return [sum(w for d, w in pmf.items() if d > i) / total for i in range(n)]


def test_layerwise_activity_follows_the_budget_probability():
    cfg = cfg_with(sampling="layerwise", identity_prob="budget")
    space = build_space(cfg)
    record = sampling_record(cfg, space, "2M")
    draw = sampler(cfg, space, "2M")
    usage = space.usage(replay_archs(cfg, draw, STEPS))
    expected = truncated_binomial_reach(space.max_layers, record["identity_prob"], space.min_depth)
    assert usage["layer_active"] == pytest.approx(expected, abs=0.02)
    assert usage["layer_active"][:2] == [1.0, 1.0]  # min_depth 2: always
    assert usage["layer_active"][5] < 0.01  # p = 0.81: the sixth layer almost never trains
    # Exactly replayable: the same seed gives the same sub-networks.
    assert space.usage(replay_archs(cfg, draw, STEPS)) == usage
    assert space.usage(replay_archs(config.validate(cfg | {"seed": 1}), draw, STEPS)) != usage
    # Width choices: uniform over the choices (of the active layers for per-layer dimensions).
    for dim, choices in (("embed", space.embed_dims), ("mlp", space.mlp_dims)):
        shares = usage["choices"][dim]
        assert sum(shares.values()) == pytest.approx(1.0)
        assert all(abs(f - 1 / len(choices)) < 0.03 for f in shares.values())


def test_depth_first_sampling_trains_every_usable_layer():
    cfg = cfg_with(sampling="depth")
    space = build_space(cfg)
    record = sampling_record(cfg, space, "2M")
    top = space.deepest_in_window(*window(cfg, "2M"))
    assert record["max_depth"] == top == 6 and record["identity_prob"] is None
    usage = space.usage(replay_archs(cfg, sampler(cfg, space, "2M"), STEPS))
    # depth uniform in [2, 6]: P(depth > i) = 1, 1, 4/5, 3/5, 2/5, 1/5
    assert usage["layer_active"] == pytest.approx([1, 1, 0.8, 0.6, 0.4, 0.2], abs=0.02)
    assert usage_report(cfg, space, replay_archs(cfg, sampler(cfg, space, "2M"), STEPS), "2M")["warnings"] == []


def test_a_usable_layer_trained_too_rarely_is_warned_about():
    cfg = cfg_with(sampling="layerwise", identity_prob=0.81)
    space = build_space(cfg)
    report = usage_report(cfg, space, replay_archs(cfg, sampler(cfg, space, "2M"), STEPS), "2M")
    flagged = sorted(int(w.split()[1]) for w in report["warnings"])
    assert flagged == [i for i, a in enumerate(report["layer_active"]) if a < 0.01] and 5 in flagged
    assert "[1.8M, 2M]" in report["warnings"][0] and "nearly untrained" in report["warnings"][0]
    # A window no deep network fits into: those layers are not usable, so not warned about.
    narrow = config.validate(cfg | {"search": cfg["search"] | {"budgets": ["500K"], "min_budget_fraction": 0.9}})
    usable = build_space(narrow).usable_layers(*window(narrow, "500K"))
    assert len(usable) < space.max_layers
    rare = usage_report(narrow, space, replay_archs(narrow, sampler(narrow, space, "500K"), 500), "500K")
    assert all(int(w.split()[1]) < len(usable) for w in rare["warnings"])


@pytest.mark.parametrize("fraction", [0.9, 0.975])
def test_candidates_initial_population_and_random_draws_lie_in_the_window(fraction):
    cfg = config.validate({"search": {"budgets": ["2M", "4M"], "min_budget_fraction": fraction,
                                      "population": 6, "generations": 2, "parents": 3,
                                      "mutations": 3, "crossovers": 3}})
    space = build_space(cfg)
    for budget in ("2M", "4M"):
        lo, hi = window(cfg, budget)
        draw = sampler(cfg, space, budget)
        score = ScoreCache(lambda arch: (space.macs(arch) % 997) / 10, space)  # any deterministic score
        for search in (evolve, random_search):
            history = search(space, score, budget, hi, cfg["search"], cfg["seed"], draw, 2000)
            assert len(history) == 6 + 2 * 6
            assert all(lo <= r["macs"] <= hi for r in history), search.__name__
            assert [r["generation"] for r in history][:6] == [0] * 6  # the initial population too
            assert all(r["window_lo"] == lo and r["window_hi"] == hi for r in history)
        assert all(lo <= space.macs(draw.within(random.Random(i), lo, hi)) <= hi for i in range(50))
