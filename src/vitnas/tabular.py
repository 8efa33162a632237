"""NAS-Bench-Macro as a search space with a known answer: a `Genome` over its table, the noisy
score a search sees, and the regret it is judged by.

NAS-Bench-Macro (Su et al., CVPR 2021; `benchdata/nas_bench_macro/README.md`): 6,561 CIFAR-10
networks, 8 layers each one of {0 identity, 1 MBConv k3 e3, 2 MBConv k5 e6}, each trained from
scratch three times, with FLOPs. A search evaluates a network by one of its three accuracies (a
seeded draw per run and network: a real evaluation is noisy) and is scored by the mean accuracy of
what it returns against the best mean accuracy in its window.
"""
from __future__ import annotations

import bisect
import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import SpaceError
from .genome import cross_genes

LAYERS = 8
CHOICES = "012"  # identity, MBConv k3 e3, MBConv k5 e6
DATA = ("benchdata", "nas_bench_macro", "nas-bench-macro_cifar10.json")


@dataclass(frozen=True, eq=False)
class MacroTable:
    """The table as arrays, one row per network, in the file's order."""

    keys: tuple[str, ...]
    test_acc: np.ndarray  # (n, 3): three trainings, %
    mean_acc: np.ndarray
    flops: np.ndarray
    params: np.ndarray
    index: dict = field(repr=False)

    @classmethod
    def from_json(cls, data: dict) -> "MacroTable":
        keys = tuple(data)
        column = lambda name, dtype: np.array([data[k][name] for k in keys], dtype)
        return cls(keys, column("test_acc", float), column("mean_acc", float), column("flops", np.int64),
                   column("params", np.int64), {k: i for i, k in enumerate(keys)})

    def window(self, lo: float, hi: float) -> np.ndarray:
        """Row indices of the networks whose FLOPs lie in [lo, hi]."""
        return np.flatnonzero((self.flops >= lo) & (self.flops <= hi))


@lru_cache(maxsize=2)
def load_macro(path: str | None = None) -> MacroTable:
    """NAS-Bench-Macro as shipped with the package (or the JSON file at `path`)."""
    source = Path(path) if path else resources.files("vitnas").joinpath(*DATA)
    return MacroTable.from_json(json.loads(source.read_text()))


class TabularGenome:
    """NAS-Bench-Macro's space as a `Genome`: an architecture is its 8-digit key, every choice
    uniform (so an in-window draw is uniform over the window's networks), cost = the table's FLOPs."""

    def __init__(self, table: MacroTable, crossover_kind: str = "uniform"):
        self.table, self.crossover_kind = table, crossover_kind
        self._flops = dict(zip(table.keys, table.flops.tolist()))  # plain ints: searches ask millions of times
        self._by_cost = sorted(table.keys, key=self.cost)
        self._costs = [self.cost(k) for k in self._by_cost]

    def sample(self, rng: random.Random) -> str:
        return "".join(rng.choice(CHOICES) for _ in range(LAYERS))

    def sample_within(self, rng: random.Random, lo: float, hi: float) -> str:
        i, j = bisect.bisect_left(self._costs, lo), bisect.bisect_right(self._costs, hi)
        if i >= j:
            raise SpaceError(f"no NAS-Bench-Macro network has FLOPs in [{lo:.4g}, {hi:.4g}]; the table "
                             f"spans [{self._costs[0]:.4g}, {self._costs[-1]:.4g}]")
        return self._by_cost[rng.randrange(i, j)]

    def mutate(self, arch: str, rng: random.Random, prob: float) -> str:
        """Each layer redrawn (uniformly, possibly to itself) with probability `prob`, as the ViT family."""
        return "".join(rng.choice(CHOICES) if rng.random() < prob else g for g in arch)

    def crossover(self, a: str, b: str, rng: random.Random, kind: str | None = None) -> str:
        if (kind or self.crossover_kind) == "uniform":  # one draw of 8 bits: each set bit takes b's gene
            mask = rng.getrandbits(LAYERS)
            return "".join(y if mask >> i & 1 else x for i, (x, y) in enumerate(zip(a, b)))
        return "".join(cross_genes(a, b, rng, kind))

    def key(self, arch: str) -> str:
        return arch  # positions matter (the table's networks downsample at fixed layers)

    def cost(self, arch: str) -> int:
        return self._flops[arch]

    def params(self, arch: str) -> int:
        return int(self.table.params[self.table.index[arch]])

    def as_json(self, arch: str) -> str:
        return arch


def noisy_score(table: MacroTable, seed: int) -> Callable[[str], float]:
    """What a search run `seed` observes: per network one of its three trainings, drawn once per
    (run, network) so that re-evaluating a network gives the same number."""
    pick = np.random.default_rng(seed).integers(0, table.test_acc.shape[1], len(table.keys))
    observed = table.test_acc[np.arange(len(table.keys)), pick]
    return lambda arch: float(observed[table.index[arch]])


@dataclass(frozen=True)
class Judged:
    """A found network against its window: regret and percentile are on the mean accuracy."""

    regret: float       # best mean accuracy in the window - the found network's, percentage points
    percentile: float   # % of the window's networks whose mean accuracy is at most the found one's
    window_size: int


def judge(table: MacroTable, arch: str, lo: float, hi: float) -> Judged:
    members = table.mean_acc[table.window(lo, hi)]
    acc = table.mean_acc[table.index[arch]]
    return Judged(float(members.max() - acc), float(100 * np.mean(members <= acc)), len(members))
