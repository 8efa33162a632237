"""The search strategies on a space with a known answer (NAS-Bench-Macro): the genome interface,
evolution against random search at a paper-like size, and the Pareto search's front."""

import json
import random

import numpy as np
import pytest

from vitnas import config
from vitnas.genome import Genome
from vitnas.pareto import front_of, pareto_search, pick
from vitnas.search import SpaceGenome, n_evaluations
from vitnas.search_quality import paired_difference, run_strategy, windows
from vitnas.families import build_space
from vitnas.spaces import Sampler
from vitnas.tabular import TabularGenome, judge, load_macro, noisy_score

# ViTAS's proportions (population 50, 25 parents, 25 + 25 children) with 2 generations instead of
# 40: 150 evaluations, 16 % of the median-cost [0.9 C, C] window (963 networks).
VITAS_LIKE = {"population": 50, "generations": 2, "parents": 25, "mutations": 25, "crossovers": 25,
              "mutation_prob": 0.3, "crossover": None}
SEEDS = range(30)


@pytest.fixture(scope="module")
def table():
    return load_macro()


@pytest.fixture(scope="module")
def genome(table):
    return TabularGenome(table)


def test_the_table_is_shipped_whole(table):
    assert len(table.keys) == 3 ** 8 == len(set(table.keys))
    assert table.flops.min() == 7_713_280 and table.flops.max() == 105_660_928
    assert np.allclose(table.mean_acc, table.test_acc.mean(axis=1), atol=1e-4)


def test_both_kinds_of_space_are_genomes(genome):
    space = build_space(config.validate({}))
    assert isinstance(genome, Genome)
    assert isinstance(SpaceGenome(space, Sampler(space, 0.5, None)), Genome)


def test_draws_are_valid_seeded_and_in_window(genome, table):
    draws = lambda seed: [genome.sample(random.Random(seed)) for _ in range(5)]
    assert draws(0) == draws(0) != draws(1)
    rng = random.Random(0)
    archs = [genome.sample(rng) for _ in range(200)]
    assert all(a in table.index for a in archs)
    lo, hi = 0.9 * 55e6, 55e6
    inside = [genome.sample_within(rng, lo, hi) for _ in range(200)]
    assert all(lo <= genome.cost(a) <= hi for a in inside) and len(set(inside)) > 150


def test_mutation_and_crossover_make_valid_seeded_children(genome, table):
    a, b = "00000000", "22222222"
    assert genome.mutate(a, random.Random(0), 0.0) == a
    assert genome.mutate(a, random.Random(0), 0.5) == genome.mutate(a, random.Random(0), 0.5)
    mutants = {genome.mutate(a, random.Random(s), 1.0) for s in range(50)}
    assert len(mutants) > 40 and all(m in table.index for m in mutants)
    for kind in ("uniform", "two_point"):
        children = [genome.crossover(a, b, random.Random(s), kind) for s in range(50)]
        assert all(set(c) <= {"0", "2"} and c in table.index for c in children)
        assert len(set(children)) > 10
    two = genome.crossover(a, b, random.Random(3), "two_point")
    assert two.strip("0") == "2" * two.count("2")  # one contiguous segment from b


def test_key_is_the_network_and_cost_the_tables_flops(genome, table):
    for arch in ("02012100", "11111221", "00000000"):
        assert genome.key(arch) == arch
        assert genome.cost(arch) == table.flops[table.index[arch]]
        assert genome.params(arch) == table.params[table.index[arch]]
    assert genome.key("01000000") != genome.key("10000000")  # positions matter in this table


def test_the_score_is_one_seeded_training_and_regret_is_on_the_mean(table):
    i = table.index["11111221"]
    scores = [noisy_score(table, seed)("11111221") for seed in range(20)]
    assert set(scores) <= set(table.test_acc[i]) and len(set(scores)) > 1
    assert noisy_score(table, 3)("11111221") == noisy_score(table, 3)("11111221")
    lo, hi = 0.9 * table.flops[i], table.flops[i]
    members = table.window(lo, hi)
    best = table.keys[members[np.argmax(table.mean_acc[members])]]
    assert judge(table, best, lo, hi).regret == 0 and judge(table, best, lo, hi).percentile == 100
    assert judge(table, "11111221", lo, hi).regret == pytest.approx(
        table.mean_acc[members].max() - table.mean_acc[i])


def test_evolution_beats_random_search_at_a_paper_like_size(table):
    (window,) = windows(table, (50,), 0.9)
    assert n_evaluations(VITAS_LIKE) <= window.size / 4  # far from seeing the whole window
    regret = {s: [run_strategy(s, table, window, VITAS_LIKE, seed)["regret"] for seed in SEEDS]
              for s in ("evolution", "random")}
    diff = paired_difference(regret["evolution"], regret["random"])
    assert np.mean(regret["evolution"]) < np.mean(regret["random"])
    assert diff["ci"][1] < 0, diff  # the paired interval excludes 0


def test_strategies_spend_equal_distinct_evaluations(table):
    (window,) = windows(table, (50,), 0.9)
    for strategy in ("evolution", "random"):
        assert run_strategy(strategy, table, window, VITAS_LIKE, 0)["evaluations"] == 150


def test_pareto_front_is_non_dominated_and_picks_lie_in_their_windows(table, genome):
    wins = windows(table, (25, 50, 75, 90), 0.9)
    lo, hi = min(w.lo for w in wins), max(w.hi for w in wins)
    calls = []
    score = noisy_score(table, 0)
    front, history = pareto_search(genome, lambda a: calls.append(a) or score(a), lo, hi, 200, 0,
                                   population=40)
    keys = [json.loads(r["arch"]) for r in history]
    assert len(history) == len(set(keys)) == len(calls) == 200  # distinct evaluations, each paid once
    assert all(lo <= r["macs"] <= hi for r in history)
    for f in front:
        assert not any(r["accuracy"] >= f["accuracy"] and r["macs"] <= f["macs"]
                       and (r["accuracy"], r["macs"]) != (f["accuracy"], f["macs"]) for r in history)
    assert front == front_of(history) and len(front) > 3
    assert all(any(r is f for r in history) for f in front)
    for w in wins:
        chosen = pick(history, w.lo, w.hi)
        assert w.lo <= chosen["macs"] <= w.hi
        members = [f for f in front if w.lo <= f["macs"] <= w.hi]
        if members:  # the best evaluated in-window network is then the best front member there
            assert chosen is max(members, key=lambda r: (r["accuracy"], -r["macs"]))


def test_pareto_search_is_seeded(table, genome):
    run = lambda seed: pareto_search(genome, noisy_score(table, 0), 40e6, 60e6, 60, seed, population=20)[1]
    assert run(0) == run(0) and run(0) != run(1)



def test_the_known_answer_claim_rows_at_the_default_search_size():
    from vitnas.claims import KNOWN_EVOLUTION, KNOWN_PARETO, MATCH_MARGIN, _beside_evolution_rows, known_answer_rows

    search = config.validate({"search": {"mode": "pareto"}, "supernet": {"per_budget": False}})["search"]
    evolution, *pareto = known_answer_rows(search, "pareto")  # 16 + 5 x (8 + 8) = 96 evaluations, 30 seeds
    assert evolution["claim"] == KNOWN_EVOLUTION and evolution["scope"] == "NAS-Bench-Macro p50"
    assert evolution["n"] == 30 and evolution["difference"] == pytest.approx(0.12689, abs=1e-4)
    assert evolution["ci_lo"] == pytest.approx(0.0812, abs=1e-3) and evolution["ci_hi"] == pytest.approx(0.1818, abs=1e-3)
    assert evolution["verdict"] == "reproduced"  # random - evolution: wholly above 0
    # Two budgets: windows at the 25th and 90th cost percentile; the Pareto search's regret is higher
    # by more than the margin in both, so "matches" is not reproduced.
    assert [r["scope"] for r in pareto] == ["NAS-Bench-Macro p25", "NAS-Bench-Macro p90"]
    assert [r["claim"] for r in pareto] == [KNOWN_PARETO] * 2
    assert [round(r["difference"], 3) for r in pareto] == [-0.372, -0.178]
    assert all(r["ci_hi"] < -MATCH_MARGIN and r["verdict"] == "not reproduced" for r in pareto)
    rows = [{"claim": c} for c in ("a", "evolution beats random search at equal evaluations", "b")]
    assert [r["claim"] for r in _beside_evolution_rows(rows, [evolution])][1:3] == [
        "evolution beats random search at equal evaluations", KNOWN_EVOLUTION]
    assert len(known_answer_rows(search | {"mode": "per_budget"})) == 1
