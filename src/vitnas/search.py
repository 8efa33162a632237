"""Evolutionary search and the random-search baseline, as plain functions over a `Genome`
(`vitnas.genome`): a family's space through `SpaceGenome`, or a tabular benchmark.

Candidates must lie in the budget window [min_budget_fraction x C, C] (0.9 C as ViTAS, 0.975 C as
ViT-ResNAS; children outside it are redrawn, not evaluated, and the initial population and the
random baseline are drawn inside it) and are scored by `score(arch)`, the held-out
top-1 with inherited supernet weights. Each network is evaluated once (de-duplicated on its
canonical form).

Resume: every draw comes from a generator seeded by (seed, method, budget), so a rerun repeats
the same sequence of candidates; the per-generation checkpoint is just the cache of scores
already paid for, and a restarted search replays up to where it stopped at no cost.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .arch import Arch
from .genome import Genome
from .io import read_json, write_json
from .errors import SpaceError
from .spaces import Sampler, Space

MAX_DRAWS = 1000  # attempts to find an unseen in-budget child before falling back to sampling


@dataclass(frozen=True)
class SpaceGenome:
    """A family's space as a `Genome`: random draws as its supernet was trained (`draw`), the rest
    from the space; cost = MACs under the timm convention."""

    space: Space
    draw: Sampler

    def sample(self, rng: random.Random) -> Arch:
        return self.draw(rng)

    def sample_within(self, rng: random.Random, lo: float, hi: float) -> Arch:
        return self.draw.within(rng, lo, hi)

    def sample_shrunk(self, rng: random.Random, lo: float, hi: float) -> Arch:
        return self.space.sample_shrunk(rng, lo, hi)

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        return self.space.mutate(arch, rng, prob)

    def crossover(self, a: Arch, b: Arch, rng: random.Random, kind: str | None = None) -> Arch:
        return self.space.crossover(a, b, rng, kind)

    def key(self, arch: Arch) -> tuple:
        return self.space.key(arch)

    def cost(self, arch: Arch) -> int:
        return self.space.macs(arch)

    def params(self, arch: Arch) -> int:
        return self.space.params(arch)

    def as_json(self, arch: Arch) -> dict:
        return arch.to_dict()


@dataclass(frozen=True)
class LatencyGenome(SpaceGenome):
    """`SpaceGenome` with cost = predicted batch-1 latency (ms) from a device's latency table
    (search.constraint: latency); in-window draws are rejection-sampled on that prediction."""

    table: Any = None  # a vitnas.latency_table.LatencyTable
    tries: int = 100_000

    def cost(self, arch: Arch) -> float:
        return 1e3 * self.table.seconds(self.space.latency_blocks(arch))

    def sample_within(self, rng: random.Random, lo: float, hi: float) -> Arch:
        for _ in range(self.tries):
            arch = self.draw(rng)
            if lo <= self.cost(arch) <= hi:
                return arch
        raise SpaceError(f"no architecture with predicted latency in [{lo:.4g}, {hi:.4g}] ms found in {self.tries} "
                         "samples; choose search.budgets inside the space's latency range or lower "
                         "search.min_budget_fraction")

    def sample_shrunk(self, rng: random.Random, lo: float, hi: float) -> Arch:
        raise SpaceError("search.init: shrink shrinks networks by MACs; use search.init: sample with "
                         "search.constraint: latency")

    def record(self, arch: Arch) -> dict:
        """The history's columns that differ from a MACs search: MACs stay MACs, the cost is latency."""
        return {"macs": self.space.macs(arch), "latency_ms": self.cost(arch)}


def as_genome(space, draw: Sampler | None) -> Genome:
    """`space` with `draw` (a family's Space and its supernet's Sampler), or a Genome already."""
    return SpaceGenome(space, draw) if draw is not None else space


class ScoreCache:
    """Scores by canonical key, saved after each generation so a killed search resumes."""

    def __init__(self, score: Callable[[Any], float], space: Genome | Space, path=None, bar=None):
        self.score, self.space, self.path, self.bar = score, space, Path(path) if path else None, bar
        self.known = {}
        if self.path and self.path.is_file():
            self.known = {json.dumps(k): v for k, v in read_json(self.path)}

    def __call__(self, arch) -> float:
        k = json.dumps(self.space.key(arch))
        if k not in self.known:
            self.known[k] = self.score(arch)
        if self.bar is not None:
            self.bar.update(1)
        return self.known[k]

    def save(self) -> None:
        if self.path:
            write_json(self.path, [[json.loads(k), v] for k, v in self.known.items()])


def accuracy_se(accuracy: float, n: int) -> float:
    """The binomial standard error (percentage points) of a top-1 measured on `n` images."""
    p = accuracy / 100
    return 100 * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def history_row(genome: Genome, arch, acc: float, method: str, generation: int, index: int,
                budget: str, budget_macs: float, lo: float, images: int) -> dict:
    return {"method": method, "generation": generation, "eval_index": index,
            "arch": json.dumps(genome.as_json(arch), separators=(",", ":")), "macs": genome.cost(arch),
            "params": genome.params(arch), "accuracy": acc, "accuracy_se": accuracy_se(acc, images),
            "eval_images": images, "budget": budget, "budget_macs": budget_macs,
            "window_lo": lo, "window_hi": budget_macs} | (genome.record(arch) if hasattr(genome, "record") else {})


def draw_unseen(genome: Genome, make: Callable[[], Any], lo: float, hi: float, seen: set,
                rng: random.Random):
    """An unseen child within [lo, hi] from `make`, or an unseen random in-budget sample."""
    for _ in range(MAX_DRAWS):
        arch = make()
        if lo <= genome.cost(arch) <= hi and genome.key(arch) not in seen:
            return arch
    for _ in range(MAX_DRAWS):
        arch = genome.sample_within(rng, lo, hi)
        if genome.key(arch) not in seen:
            return arch
    return arch  # the window holds fewer networks than asked for: allow a repeat


def within_window(genome: Genome, make: Callable[[], Any], lo: float, hi: float) -> Any:
    """`make()` redrawn until it lies in [lo, hi] (at most MAX_DRAWS times; the last draw else)."""
    for _ in range(MAX_DRAWS):
        arch = make()
        if lo <= genome.cost(arch) <= hi:
            break
    return arch


def evolve(genome: Genome | Space, score: ScoreCache, budget: str, budget_macs: float, cfg: dict,
           seed: int, draw: Sampler | None = None, images: int = 0) -> list[dict]:
    """Evolution: a random in-window initial population, then per generation `mutations` mutated
    and `crossovers` crossed-over in-window children of the top `parents`; the best `population`
    survive. `genome`: a Genome, or a family's Space with its supernet's Sampler `draw`.
    `images`: held-out images per score (for the SE).

    The search section's switches (absent keys: the first value), the second value each as
    ViT-ResNAS released it (yilunliao/vit-search at 303e7c3):
    - `init`: "sample" draws the initial population as the supernet was trained; "shrink" as the
      released search (`genome.sample_shrunk`, gen_utils.py:179-252);
    - `retry_parents`: "new" picks new parents for every redraw of an out-of-window child; "same"
      redraws from the same parents until the child lies in the window, and picks new ones only
      for a child already seen (gen_utils.py:308-323, evolver.py evolve_sample);
    - `crossover_parents`: "any" picks both parents from the top with replacement; "distinct" two
      different ones (evolver.py:101)."""
    genome = as_genome(genome, draw)
    lo, hi = cfg["min_budget_fraction"] * budget_macs, budget_macs
    rng = random.Random(f"{seed}-evolution-{budget}")
    history, seen = [], set()
    init, retry = cfg.get("init", "sample"), cfg.get("retry_parents", "new")
    distinct = cfg.get("crossover_parents", "any") == "distinct"
    if distinct and cfg["parents"] < 2:
        raise SpaceError("search.crossover_parents: distinct needs two parents; set search.parents >= 2")
    if init == "shrink" and not hasattr(genome, "sample_shrunk"):  # optional: a family's space has it
        raise SpaceError("search.init: shrink needs a family's space (Space.sample_shrunk); use search.init: sample")

    def evaluate(arch, generation: int) -> dict:
        seen.add(genome.key(arch))
        row = history_row(genome, arch, score(arch), "evolution", generation, len(history), budget,
                          budget_macs, lo, images)
        history.append(row | {"_arch": arch})
        return history[-1]

    first = (lambda: genome.sample_shrunk(rng, lo, hi)) if init == "shrink" else (lambda: genome.sample(rng))
    population = [evaluate(draw_unseen(genome, first, lo, hi, seen, rng), 0) for _ in range(cfg["population"])]
    score.save()
    for gen in range(1, cfg["generations"] + 1):
        parents = sorted(population, key=lambda r: -r["accuracy"])[:cfg["parents"]]
        pick = lambda: rng.choice(parents)["_arch"]
        pair = lambda: [r["_arch"] for r in rng.sample(parents, 2)] if distinct else [pick(), pick()]

        def child(make_parents, breed):
            """A child of freshly picked parents: redrawn from them until in the window with
            retry_parents "same"; drawn once with "new" (draw_unseen then picks new parents)."""
            def make():
                ps = make_parents()
                if retry == "same":
                    return within_window(genome, lambda: breed(*ps), lo, hi)
                return breed(*ps)
            return make

        mutant = child(lambda: [pick()], lambda a: genome.mutate(a, rng, cfg["mutation_prob"]))
        children = [evaluate(draw_unseen(genome, mutant, lo, hi, seen, rng), gen)
                    for _ in range(cfg["mutations"])]
        cross = child(pair, lambda a, b: genome.crossover(a, b, rng, cfg["crossover"]))
        children += [evaluate(draw_unseen(genome, cross, lo, hi, seen, rng), gen)
                     for _ in range(cfg["crossovers"])]
        population = sorted(population + children, key=lambda r: -r["accuracy"])[:cfg["population"]]
        score.save()
    return [{k: v for k, v in r.items() if k != "_arch"} for r in history]


def random_search(genome: Genome | Space, score: ScoreCache, budget: str, budget_macs: float,
                  cfg: dict, seed: int, draw: Sampler | None = None, images: int = 0) -> list[dict]:
    """The baseline: as many distinct random in-budget networks as evolution evaluates, grouped
    into 'generations' of the same sizes so the two compare step by step."""
    genome = as_genome(genome, draw)
    lo, hi = cfg["min_budget_fraction"] * budget_macs, budget_macs
    rng = random.Random(f"{seed}-random-{budget}")
    per_gen = cfg["mutations"] + cfg["crossovers"]
    n = cfg["population"] + cfg["generations"] * per_gen
    history, seen = [], set()
    for i in range(n):
        arch = draw_unseen(genome, lambda: genome.sample(rng), lo, hi, seen, rng)
        seen.add(genome.key(arch))
        gen = 0 if i < cfg["population"] else 1 + (i - cfg["population"]) // max(per_gen, 1)
        history.append(history_row(genome, arch, score(arch), "random", gen, i, budget, budget_macs, lo,
                                   images))
        if i + 1 == n or (i + 1 - cfg["population"]) % max(per_gen, 1) == 0:
            score.save()
    return history


def best_of(history: list[dict]) -> dict:
    """The most accurate candidate (fewer MACs breaks ties)."""
    return max(history, key=lambda r: (r["accuracy"], -r["macs"]))


def n_evaluations(cfg: dict) -> int:
    return cfg["population"] + cfg["generations"] * (cfg["mutations"] + cfg["crossovers"])


def scoring(cfg: dict, data_dir, supernet_path):
    """What a search stage scores with: the supernet's space, the held-out scorer, and the number
    of held-out images per score."""
    from .loader import held_out_images
    from .engine import resolve_device
    from .supernet.train import load_supernet, scorer

    sc = cfg["search"]
    device = resolve_device(cfg["device"])
    net = load_supernet(cfg, supernet_path, device)
    held_out = held_out_images(cfg, data_dir, sc["eval_images"], net.space.img_size, device)
    return net.space, scorer(net, held_out, sc["eval_batch_size"], device), len(held_out)


def write_history(path, history: list[dict]) -> None:
    import pandas as pd

    from .io import atomic_path

    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def write_best(path, best: dict) -> None:
    """best.json: the architecture, and the search record retraining and the tables read."""
    arch = Arch.from_json(best["arch"])
    write_json(path, arch.to_dict() | {"search": {k: best[k] for k in (
        "method", "accuracy", "accuracy_se", "macs", "params", "budget", "budget_macs", "window_lo",
        "window_hi", "generation")} | {k: best[k] for k in LATENCY_KEYS if k in best}})


# What a latency-constrained search adds to best.json's search record.
LATENCY_KEYS = ("constraint", "latency_ms", "measured_latency_ms", "latency_device", "latency_table")


def latency_search_parts(cfg: dict, space: Space, draw: Sampler, root: str | None, time_fn=None):
    """The genome of a latency-constrained search (the device's table built or read first), the
    timer that measured it and the table's path."""
    from . import results
    from .latency_table import device_key, space_table, timer

    lat = cfg["search"]["latency"]
    time_fn = time_fn or timer(lat["warmup"], lat["repeats"], lat["statistic"])
    root = root or results.experiment_dir(cfg["experiment"])
    path_of = lambda key: results.latency_table(root, cfg["space_name"], key)
    table, _ = space_table(space, path_of, lat["device"], lat["threads"], time_fn, statistic=lat["statistic"])
    return LatencyGenome(space, draw, table), time_fn, path_of(device_key(table.fingerprint))


def search_budget(cfg: dict, space: Space, cache: ScoreCache, method: str, budget: str, images: int,
                  genome=None, draw: Sampler | None = None, limit: float | None = None) -> list[dict]:
    """One budget's search ("evolution" or "random") of a supernet's `space` as the search stage
    runs it, scoring through `cache`; the history, every evaluation in order. `genome`, `draw` and
    `limit`: a latency search's (search_and_write); by default the space itself, the budget's
    supernet's sampler and the budget's MACs."""
    from .spaces import parse_macs, sampler, supernet_budget

    if genome is None:
        limit = parse_macs(budget)
        space.check_budget(budget, limit)
        genome, draw = space, sampler(cfg, space, supernet_budget(cfg, budget))
    search = evolve if method == "evolution" else random_search
    return search(genome, cache, budget, limit, cfg["search"], cfg["seed"], draw, images)


def run(cfg: dict, method: str, budget: str, data_dir, supernet_path, history_out, best_out,
        ckpt_dir) -> dict:
    """The search stage for one budget and method ("evolution" or "random")."""
    space, score, images = scoring(cfg, data_dir, supernet_path)
    return search_and_write(cfg, method, budget, space, score, images, history_out, best_out, ckpt_dir)


def search_and_write(cfg: dict, method: str, budget: str, space: Space, score, images: int, history_out,
                     best_out, ckpt_dir, latency_root: str | None = None, time_fn=None,
                     draw: Sampler | None = None) -> dict:
    """One budget's search with `score` (held-out top-1 of an Arch), its history and pick written.
    Under search.constraint: latency the budget is in ms, the cost the device's predicted latency,
    and the pick's latency is then measured end to end (its best.json holds both); `latency_root`:
    the results folder holding the latency table (default: the experiment's), `time_fn`: the timer
    (default: the table's), `draw`: how the supernet was sampled (default: the budget's own
    supernet's sampler)."""
    from .engine import progress
    from .spaces import sampler, supernet_budget
    from .units import parse_ms

    sc = cfg["search"]
    latency = sc.get("constraint", "macs") == "latency"
    genome = limit = None
    if latency:
        genome, time_fn, table_path = latency_search_parts(
            cfg, space, draw or sampler(cfg, space, supernet_budget(cfg, budget)), latency_root, time_fn)
        limit, draw = parse_ms(budget), None
    with progress(n_evaluations(sc), 0, f"{method} {budget}") as bar:
        cache = ScoreCache(score, space, Path(ckpt_dir) / f"{method}-{budget}-scores.json", bar)
        history = search_budget(cfg, space, cache, method, budget, images, genome, draw, limit)
    write_history(history_out, history)
    best = best_of(history)
    if latency:
        best = best | measure_pick(cfg, space, best, time_fn) | {"latency_table": str(table_path)}
    if best_out:
        write_best(best_out, best)
    return best


def measure_pick(cfg: dict, space: Space, best: dict, time_fn) -> dict:
    """The picked network's measured end-to-end batch-1 latency, beside its prediction."""
    from . import families
    from .latency_table import measured_seconds

    lat = cfg["search"]["latency"]
    model = families.get(space.family).build_model(Arch.from_json(best["arch"]), space)
    seconds = measured_seconds(model, space, lat["device"], lat["threads"], time_fn)
    return {"constraint": "latency", "latency_device": f"{lat['device']}-{lat['threads']}thread",
            "measured_latency_ms": 1e3 * seconds}
