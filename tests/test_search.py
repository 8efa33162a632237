"""Search as plain functions: budget windows, de-duplication, determinism, resume."""

import pytest

from vitnas import config
from vitnas.search import ScoreCache, best_of, evolve, n_evaluations, random_search
from vitnas.families import build_space
from vitnas.spaces import Sampler

CFG = config.validate({"search": {"population": 8, "generations": 3, "parents": 4, "mutations": 4,
                                  "crossovers": 4, "min_budget_fraction": 0.5}})


def proxy_score(arch):
    """A cheap deterministic stand-in for held-out accuracy: favours depth and width."""
    return arch.depth * 3.0 + arch.embed / 10 + sum(l.mlp for l in arch.blocks) / 100


@pytest.mark.parametrize("search", [evolve, random_search])
def test_candidates_are_valid_unique_and_in_budget(search):
    space = build_space(CFG)
    history = search(space, ScoreCache(proxy_score, space), "4M", 4e6, CFG["search"], 0, Sampler(space, 0.5, None))
    assert len(history) == n_evaluations(CFG["search"]) == 8 + 3 * 8
    keys = set()
    for row in history:
        from vitnas.arch import Arch
        arch = Arch.from_json(row["arch"])
        assert space.contains(arch)
        assert 2e6 <= row["macs"] == space.macs(arch) <= 4e6
        keys.add(space.key(arch))
    assert len(keys) == len(history)
    assert sorted({r["generation"] for r in history}) == [0, 1, 2, 3]


def test_same_seed_same_result_other_seed_differs():
    space = build_space(CFG)
    runs = [evolve(space, ScoreCache(proxy_score, space), "4M", 4e6, CFG["search"], seed, Sampler(space, 0.5, None))
            for seed in (0, 0, 1)]
    assert runs[0] == runs[1]
    assert [r["arch"] for r in runs[0]] != [r["arch"] for r in runs[2]]


def test_evolution_improves_on_its_initial_population():
    space = build_space(CFG)
    history = evolve(space, ScoreCache(proxy_score, space), "4M", 4e6, CFG["search"], 0, Sampler(space, 0.5, None))
    first = max(r["accuracy"] for r in history if r["generation"] == 0)
    assert best_of(history)["accuracy"] > first


def test_resume_replays_from_the_score_cache(tmp_path):
    space = build_space(CFG)
    calls = []
    counted = lambda arch: calls.append(arch) or proxy_score(arch)
    path = tmp_path / "scores.json"
    full = evolve(space, ScoreCache(counted, space, path), "4M", 4e6, CFG["search"], 0, Sampler(space, 0.5, None))
    assert len(calls) == len(full)
    calls.clear()
    again = evolve(space, ScoreCache(counted, space, path), "4M", 4e6, CFG["search"], 0, Sampler(space, 0.5, None))
    assert again == full and calls == []  # nothing re-evaluated


def test_killed_search_resumes_to_the_same_result(tmp_path):
    space = build_space(CFG)
    path = tmp_path / "scores.json"
    reference = evolve(space, ScoreCache(proxy_score, space), "4M", 4e6, CFG["search"], 0, Sampler(space, 0.5, None))

    def dies_after(n):
        count = [0]
        def score(arch):
            count[0] += 1
            if count[0] > n:
                raise KeyboardInterrupt  # a kill mid-generation
            return proxy_score(arch)
        return score

    with pytest.raises(KeyboardInterrupt):
        evolve(space, ScoreCache(dies_after(13), space, path), "4M", 4e6, CFG["search"], 0, Sampler(space, 0.5, None))
    assert path.is_file()  # generation 0 was checkpointed
    resumed = evolve(space, ScoreCache(proxy_score, space, path), "4M", 4e6, CFG["search"], 0, Sampler(space, 0.5, None))
    assert resumed == reference
