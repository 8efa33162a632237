"""The genome interface: what a search strategy needs from a search space, and nothing else.

`evolve`, `random_search` (`vitnas.search`) and `pareto_search` (`vitnas.pareto`) take a `Genome`, so
a family's space (through `search.SpaceGenome`: its `Space` with the sampler its supernet was
trained with) and a tabular benchmark with a known answer (`vitnas.tabular.TabularGenome`) run
through the same code. Architectures are opaque values to the strategies: they only hand them back
to the genome. Torch-free and import-free, the bottom floor. One optional member:
`sample_shrunk(rng, lo, hi)`, ViT-ResNAS's released initial-population draw (search.init: shrink),
which `SpaceGenome` takes from the family's space.
"""
from __future__ import annotations

import random
from typing import Any, Hashable, Protocol, Sequence, runtime_checkable

CROSSOVER_KINDS = ("uniform", "two_point")


@runtime_checkable
class Genome(Protocol):
    """A search space as the strategies see it. `cost` is what budgets bound (MACs)."""

    def sample(self, rng: random.Random) -> Any:
        """A random architecture, drawn as the space's supernet was trained."""

    def sample_within(self, rng: random.Random, lo: float, hi: float) -> Any:
        """A random architecture whose cost lies in [lo, hi]."""

    def mutate(self, arch: Any, rng: random.Random, prob: float) -> Any:
        """A copy with each gene redrawn with probability `prob`."""

    def crossover(self, a: Any, b: Any, rng: random.Random, kind: str | None = None) -> Any:
        """A child of `a` and `b` ("uniform", "two_point", or None: the space's own kind)."""

    def key(self, arch: Any) -> Hashable:
        """The canonical form: two architectures with the same key are the same network."""

    def cost(self, arch: Any) -> float:
        """What a budget bounds (MACs)."""

    def params(self, arch: Any) -> int:
        """Parameters, for the search history."""

    def as_json(self, arch: Any) -> Any:
        """The architecture as a JSON value, for the search history."""


def cross_genes(ga: Sequence, gb: Sequence, rng: random.Random, kind: str) -> list:
    """One crossover of two equally long gene strings: "uniform" (each gene from either parent with
    1/2, as HAT and ViT-ResNAS) or "two_point" (the segment between two cut points from `gb`)."""
    if kind == "uniform":
        return [y if rng.random() < 0.5 else x for x, y in zip(ga, gb)]
    if kind == "two_point":
        i, j = sorted(rng.sample(range(len(ga) + 1), 2))
        return list(ga[:i]) + list(gb[i:j]) + list(ga[j:])
    raise ValueError(f"crossover kind {kind!r} is not known; choose one of {', '.join(CROSSOVER_KINDS)}")
