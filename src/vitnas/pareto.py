"""One multi-objective search for every budget at once: NSGA-II (pymoo) over a `Genome`, accuracy
against cost over the whole range the budgets' windows span; each budget then takes the best
network of the front inside its window.

pymoo drives selection (binary tournaments on rank and crowding) and survival (non-dominated
sorting, crowding distance); the genome's own sample / mutate / crossover make the children, as in
`search.evolve`, so architectures stay opaque values (an object column in pymoo's arrays). Every
child lies in the range and is new (never evaluated before), so `n_evals` counts distinct
evaluations, as the per-budget strategies do.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import SpaceError
from .genome import Genome
from .search import (ScoreCache, SpaceGenome, best_of, draw_unseen, history_row, n_evaluations, scoring,
                     write_best, write_history)

TRIES = 100  # crossovers tried for an in-range child before keeping the first parent


def front_of(rows: list[dict]) -> list[dict]:
    """The non-dominated rows (higher `accuracy`, fewer `macs`), cheapest first; of equal rows the
    first evaluated."""
    ordered = sorted(rows, key=lambda r: (r["macs"], -r["accuracy"], r["eval_index"]))
    front, best = [], -np.inf
    for r in ordered:
        if r["accuracy"] > best:
            front.append(r)
            best = r["accuracy"]
    return front


def pick(rows: list[dict], lo: float, hi: float) -> dict | None:
    """The most accurate of `rows` with cost in [lo, hi] (fewer MACs breaks ties), None if none.
    Over a search's whole history this is the best front member inside the window whenever the
    window holds one (a dominated in-window best would be dominated from below lo, and so would
    every front member in the window); otherwise the best network it evaluated there."""
    inside = [r for r in rows if lo <= r["macs"] <= hi]
    return best_of(inside) if inside else None


def schedule(sc: dict, k: int) -> dict:
    """`pareto_search`'s sizes for `k` budgets searched at once, at the evaluations the per-budget
    searches of the `search` section `sc` spend together: population and children per generation
    scaled by k alike."""
    return {"n_evals": k * n_evaluations(sc), "population": k * sc["population"],
            "offspring": k * (sc["mutations"] + sc["crossovers"]), "mutation_prob": sc["mutation_prob"],
            "crossover": sc["crossover"]}


def budget_history(history: list[dict], budget: str, lo: float, hi: float) -> list[dict]:
    """The evaluations inside a budget's window [lo, hi], labelled as that budget's search: its
    history.csv, which retraining, the tables and the claims read as a per-budget search's."""
    return [r | {"budget": budget, "budget_macs": hi, "window_lo": lo, "window_hi": hi}
            for r in history if lo <= r["macs"] <= hi]


def pareto_search(genome: Genome, score: Callable[[Any], float], lo: float, hi: float, n_evals: int,
                  seed: int, population: int = 50, offspring: int | None = None,
                  mutation_prob: float = 0.3, crossover: str | None = None,
                  label: str = "pareto", images: int = 0) -> tuple[list[dict], list[dict]]:
    """NSGA-II over networks with cost in [lo, hi], maximising `score` and minimising cost, for
    `n_evals` distinct evaluations (fewer if the range runs out of new networks). `offspring`
    children per generation (default `population`). Returns (front, history): the non-dominated
    evaluated networks, cheapest first, and every evaluation in order, as `search.evolve`'s rows."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.problems.static import StaticProblem

    rng = random.Random(f"{seed}-pareto-{label}")
    cache = score if isinstance(score, ScoreCache) else ScoreCache(score, genome)
    seen: set = set()
    ops = _operators(genome, lo, hi, seen, rng, mutation_prob, crossover)
    algorithm = NSGA2(pop_size=population, n_offsprings=offspring or population, **ops)
    problem = Problem(n_var=1, n_obj=2, vtype=object)
    algorithm.setup(problem, seed=seed, termination=("n_eval", 10 ** 12))
    history: list[dict] = []
    generation = 0
    while len(history) < n_evals:
        pop = algorithm.ask()
        if pop is None or len(pop) == 0:
            break  # no new network left in the range
        pop = pop[:n_evals - len(history)]
        rows = []
        for arch in pop.get("X")[:, 0]:
            seen.add(genome.key(arch))
            rows.append(history_row(genome, arch, cache(arch), "pareto", generation, len(history) + len(rows),
                             label, hi, lo, images))
        history += rows
        F = np.array([[-r["accuracy"], r["macs"]] for r in rows], float)
        Evaluator().eval(StaticProblem(problem, F=F), pop)
        algorithm.tell(infills=pop)
        cache.save()
        generation += 1
    return front_of(history), history


def _operators(genome: Genome, lo: float, hi: float, seen: set, rng: random.Random,
               mutation_prob: float, crossover: str | None) -> dict:
    """pymoo's sampling, crossover, mutation and duplicate elimination over the genome."""
    from pymoo.core.crossover import Crossover
    from pymoo.core.duplicate import DuplicateElimination
    from pymoo.core.mutation import Mutation
    from pymoo.core.sampling import Sampling

    class Sample(Sampling):
        def _do(self, problem, n_samples, **kwargs):
            drawn: set = set()
            X = np.empty((n_samples, 1), dtype=object)
            for i in range(n_samples):
                X[i, 0] = draw_unseen(genome, lambda: genome.sample_within(rng, lo, hi), lo, hi,
                                      seen | drawn, rng)
                drawn.add(genome.key(X[i, 0]))
            return X

    class Cross(Crossover):
        def __init__(self):
            super().__init__(n_parents=2, n_offsprings=1)

        def _do(self, problem, X, **kwargs):
            out = np.empty((1, X.shape[1], 1), dtype=object)
            for m in range(X.shape[1]):
                a, b = X[0, m, 0], X[1, m, 0]
                children = (genome.crossover(a, b, rng, crossover) for _ in range(TRIES))
                out[0, m, 0] = next((c for c in children if lo <= genome.cost(c) <= hi), a)
            return out

    class Mutate(Mutation):
        def _do(self, problem, X, **kwargs):
            Y = np.empty_like(X)
            for i, (arch,) in enumerate(X):
                Y[i, 0] = draw_unseen(genome, lambda: genome.mutate(arch, rng, mutation_prob), lo, hi,
                                      seen, rng)
            return Y

    class ByKey(DuplicateElimination):
        """Same key as another child, a population member or any network evaluated before."""

        def _do(self, pop, other, is_duplicate):
            known = {genome.key(x) for x in other.get("X")[:, 0]} if other is not None else set()
            for i, arch in enumerate(pop.get("X")[:, 0]):
                k = genome.key(arch)
                is_duplicate[i] = k in known or k in seen
                known.add(k)
            return is_duplicate

    return {"sampling": Sample(), "crossover": Cross(), "mutation": Mutate(),
            "eliminate_duplicates": ByKey()}


def search_budgets(cfg: dict, space, cache: ScoreCache, images: int) -> tuple[list[dict], list[dict], dict]:
    """The Pareto search as the search stage runs it: one NSGA-II search of a shared supernet's
    `space` over the range every budget of `cfg`'s search section spans, at the evaluations the
    per-budget searches spend together, scoring through `cache`. Returns (front, history, rows):
    rows per budget, the in-window evaluations labelled as that budget's search."""
    from .spaces import format_macs, parse_macs, sampler, window

    sc = cfg["search"]
    for b in sc["budgets"]:
        space.check_budget(b, parse_macs(b))
    wins = {b: window(cfg, b) for b in sc["budgets"]}
    lo, hi = min(w[0] for w in wins.values()), max(w[1] for w in wins.values())
    front, history = pareto_search(SpaceGenome(space, sampler(cfg, space)), cache, lo, hi,
                                   seed=cfg["seed"], images=images, **schedule(sc, len(wins)))
    rows = {b: budget_history(history, b, *w) for b, w in wins.items()}
    for b, found in rows.items():
        if not found:
            raise SpaceError(f"search.budgets: the Pareto search evaluated no network in the window of {b}, "
                             f"[{format_macs(wins[b][0])}, {format_macs(wins[b][1])}]; raise "
                             "search.population or search.generations (or search.mode: per_budget)")
    return front, history, rows


def run_pareto(cfg: dict, data_dir, supernet_path, front_out, history_out, budget_outs: dict,
               ckpt_dir) -> dict[str, dict]:
    """The search stage with `search.mode: pareto` (`search_budgets`); writes the front, the whole
    history and, per budget (`budget_outs`: budget -> (history.csv, best.json)), the in-window rows
    and the pick, as the per-budget search writes them. Returns the picks by budget. Scores are
    cached per generation (`ckpt_dir`), so a killed search rerun repeats the same history at no cost."""
    from .engine import progress

    space, score, images = scoring(cfg, data_dir, supernet_path)
    with progress(schedule(cfg["search"], len(cfg["search"]["budgets"]))["n_evals"], 0, "pareto") as bar:
        cache = ScoreCache(score, space, Path(ckpt_dir) / "pareto-scores.json", bar)
        front, history, rows = search_budgets(cfg, space, cache, images)
    write_history(history_out, history)
    write_history(front_out, front)
    picks = {b: best_of(found) for b, found in rows.items()}
    for b, (hist_out, best_out) in budget_outs.items():
        write_history(hist_out, rows[b])
        write_best(best_out, picks[b])
    return picks
