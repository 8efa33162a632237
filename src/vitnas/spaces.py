"""Search spaces: what every family's space shares, and how a supernet samples from it.

A family's space (`vitnas.families.<name>.space`) samples, mutates and crosses over `Arch` values
and counts their MACs and parameters analytically; `Space` here holds what does not depend on the
family (canonical form, budget checks, in-window sampling, usage). `sampling_record` / `sampler`
turn the `supernet` switches (layer-wise draws with a given or budget-driven identity probability,
or a uniform depth) into how one supernet samples. Torch-free, so the Snakefile can check budgets
before anything runs.

Every family counts MACs under the "timm" convention: what `torch.utils.flop_counter` measures / 2
on the exported model with explicit-matmul attention (LayerNorm, softmax, GELU, pooling and
additions are not counted); a family may add the convention of its paper's released counter.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from .arch import Arch
from .errors import SpaceError
from .units import format_macs, parse_macs  # noqa: F401  (re-exported: callers name them here)

# Per dataset: input channels, classes and native image size (the config may resize).
DATASETS = {
    "fashion_mnist": {"in_chans": 1, "num_classes": 10, "img_size": 28},
    "imagenet": {"in_chans": 3, "num_classes": 1000, "img_size": 224},
    "cifar10": {"in_chans": 3, "num_classes": 10, "img_size": 32},
}


def data_info(data: dict) -> dict:
    """Input channels, classes and native image size of the `data` section's data set: a class
    subset (`data.classes`, ImageNet-100) sets the class count."""
    from .data import class_subset

    info = dict(DATASETS[data["dataset"]])
    classes = class_subset(data)
    if classes:
        info["num_classes"] = len(classes)
    return info

# Rejection draws in `ViTSpace.sample` before it draws the depth directly. Plain rejection is what
# earlier versions did (same random stream, same architectures); 20 failures in a row need p near 1.
REJECTION_TRIES = 20
IDENTITY_PROB_SAMPLES = 1000  # random sub-networks per step of ViTAS's identity-probability search


@dataclass(frozen=True)
class LatencyBlock:
    """One part of a network as the latency table times it (vitnas.latency_table): `key`, its shape
    (what the time depends on: two parts with one key take one time); `build()`, the family's real
    stand-alone module (imports torch when called); `shape`, its input without the batch dimension;
    `chain`: its output has its input's shape, so it is timed in a chain of copies (in context)."""

    key: tuple
    build: Callable[[], Any]
    shape: tuple[int, ...]
    chain: bool = False


class Space:
    """What every family's space shares. A family defines `family`, the data fields (`img_size`,
    `in_chans`, `num_classes`), `identity_shifting`, `sampling` and: `from_config`, `contains`,
    `sample`, `mutate`, `crossover`, `macs`, `params`, `smallest`, `largest`,
    `deepest_in_window`, `layer_slots`, `usable_layers`, `choices`, `arch_choices`."""

    conventions: tuple[str, ...] = ("timm",)
    crossover_kind = "uniform"  # the family's own crossover, when search.crossover is null

    def canonical(self, arch: Arch) -> Arch:
        return arch.shifted() if self.identity_shifting else arch

    def key(self, arch: Arch) -> tuple:
        return arch.key(shifting=self.identity_shifting)

    def check_convention(self, convention: str) -> None:
        if convention not in self.conventions:
            raise SpaceError(f"convention {convention!r} is not known for the {self.family} family; "
                             f"choose one of {', '.join(self.conventions)}")

    def macs_range(self) -> tuple[int, int]:
        return self.macs(self.smallest()), self.macs(self.largest())

    def check_budget(self, name: str, budget: float) -> None:
        lo, hi = self.macs_range()
        if not lo <= budget <= hi:
            raise SpaceError(f"search.budgets: {name} ({budget:.4g} MACs) lies outside the {self.family} "
                             f"space's MACs range [{format_macs(lo)}, {format_macs(hi)}]; choose budgets "
                             "inside it or widen the space")

    def usage(self, archs) -> dict:
        """How often each layer slot computed something and each choice was used over `archs` (the
        sub-networks of the training steps): fractions of the steps (per-layer choices: of the
        active layers)."""
        n = max(len(archs), 1)
        slots = self.layer_slots()
        active = [0] * len(slots)
        counts = {dim: {v: 0 for v in values} for dim, values in self.choices().items()}
        per_layer = {dim: 0 for dim in counts}
        for arch in archs:
            for i, layer in enumerate(l for s in arch.stages for l in s.layers):
                active[i] += not layer.identity
            for dim, value, layerwise in self.arch_choices(arch):
                counts[dim][value] += 1
                per_layer[dim] = per_layer[dim] or layerwise
        blocks = max(sum(active), 1)
        return {"steps": len(archs), "layers": slots, "layer_active": [a / n for a in active],
                "choices": {dim: {str(v): c / (blocks if per_layer[dim] else n) for v, c in per.items()}
                            for dim, per in counts.items()}}

    def crossover(self, a: Arch, b: Arch, rng: random.Random, kind: str | None = None) -> Arch:
        """A child of the gene strings (`_genes` / `_from_genes`, layer genes at their positions):
        "uniform" (ViT-ResNAS, after HAT: each gene from either parent with 1/2) or "two_point"
        (the segment between two cut points from `b`); redrawn until it is a valid network."""
        ga, gb = self._genes(a), self._genes(b)
        while True:
            if (kind or self.crossover_kind) == "uniform":
                genes = [y if rng.random() < 0.5 else x for x, y in zip(ga, gb)]
            else:
                i, j = sorted(rng.sample(range(len(ga) + 1), 2))
                genes = ga[:i] + gb[i:j] + ga[j:]
            child = self._from_genes(genes)
            if child.depth >= self.min_depth:
                return child

    def sample_within(self, rng: random.Random, lo: float, hi: float, identity_prob: float = 0.5,
                      tries: int = 100_000, max_depth: int | None = None) -> Arch:
        """Rejection-sample an architecture whose MACs lie in [lo, hi]."""
        for _ in range(tries):
            arch = self.sample(rng, identity_prob, max_depth)
            if lo <= self.macs(arch) <= hi:
                return arch
        raise SpaceError(f"no architecture with MACs in [{format_macs(lo)}, {format_macs(hi)}] "
                         f"found in {tries} samples; widen the budget window "
                         "(search.min_budget_fraction) or the space")

    def sample_many(self, rngs: list[random.Random], identity_prob: float = 0.5,
                    max_depth: int | None = None) -> list[Arch]:
        """The sub-networks of one multi-architecture training step, one per generator (a family
        hook, see vitnas.families.contract): by default each drawn alone, as `sample` draws."""
        return [self.sample(rng, identity_prob, max_depth) for rng in rngs]

    def sample_shrunk(self, rng: random.Random, lo: float, hi: float) -> Arch:
        """A network in [lo, hi] drawn as ViT-ResNAS's released search draws its initial population
        (a family hook, see vitnas.families.contract): by default the family has none."""
        raise SpaceError(f"search.init: shrink (ViT-ResNAS's initial population) is not available for the "
                         f"{self.family} family; use search.init: sample")

    def latency_blocks(self, arch: Arch) -> list[LatencyBlock]:
        """The parts whose timed sum predicts `arch`'s latency (a family hook, see
        vitnas.families.contract): by default the family has none, and refuses search.constraint:
        latency."""
        raise SpaceError(f"search.constraint: latency needs the {self.family} family's latency blocks "
                         "(Space.latency_blocks), which it does not provide; use search.constraint: macs")

    def all_latency_blocks(self) -> list[LatencyBlock]:
        """Every part any network of the space is made of (the table is built for these, once)."""
        return self.latency_blocks(self.smallest())

    @property
    def has_latency(self) -> bool:
        return type(self).latency_blocks is not Space.latency_blocks

    def unlocked(self, epoch: float, warmup_epochs: float) -> "Space":
        """The space progressive unlocking samples from at `epoch` of its `warmup_epochs` (a
        family hook, see vitnas.families.contract): by default the whole space."""
        return self


class StagedSpace(Space):
    """What the multi-stage spaces share (resnas, twins): stages of blocks, some of them removable.
    A family defines `stages` (each with `blocks` and `removable`) and `_extreme(end, kept)`: every choice at its smallest (end 0) or largest (end -1), the first
    kept[s] removable blocks of stage s kept and the others skipped."""

    @property
    def min_depth(self) -> int:
        """Blocks of the shallowest network (every removable block skipped)."""
        return sum(st.blocks - len(st.removable) for st in self.stages)

    @property
    def max_depth(self) -> int:
        return sum(st.blocks for st in self.stages)

    def smallest(self) -> Arch:
        """The architecture with the fewest MACs."""
        return self._extreme(0, (0,) * len(self.stages))

    def largest(self) -> Arch:
        """The architecture with the most MACs."""
        return self._extreme(-1, tuple(len(st.removable) for st in self.stages))

    def _kept_ranges(self):
        """(kept removable blocks per stage, fewest MACs, most MACs) for every split of the kept
        blocks over the stages; a network's MACs lie in the range of its split."""
        for kept in itertools.product(*(range(len(st.removable) + 1) for st in self.stages)):
            yield kept, self.macs(self._extreme(0, kept)), self.macs(self._extreme(-1, kept))

    def deepest_in_window(self, lo: float, hi: float) -> int:
        """The total depth of the deepest network whose MACs can lie in [lo, hi] (0 if none can)."""
        depths = [self.min_depth + sum(kept) for kept, fewest, most in self._kept_ranges()
                  if fewest <= hi and most >= lo]
        return max(depths, default=0)

    def layer_slots(self) -> list[str]:
        return [f"s{s}.l{i}" for s, st in enumerate(self.stages) for i in range(st.blocks)]

    def _skipped(self, rng: random.Random, removable: list, identity_prob: float,
                 max_depth: int | None) -> set:
        """The (stage, position) pairs of `removable` a sampled network skips: each with
        `identity_prob` (layerwise), or all but a uniform number of them (depth sampling)."""
        if self.sampling == "depth":
            top = len(removable) if max_depth is None else min(max(max_depth - self.min_depth, 0), len(removable))
            return set(removable) - set(rng.sample(removable, rng.randint(0, top)))
        return {pos for pos in removable if rng.random() < identity_prob}


def widest_within(macs, make, budget_macs: float, step: int, most: int):
    """The widest `make(w)`, w = step, 2 step, ... up to `most`, whose MACs stay within the
    budget (MACs grow with the width: the search stops at the first one over), or None."""
    best = None
    for w in range(step, most + 1, step):
        if macs(make(w)) > budget_macs:
            break
        best = w
    return best


def identity_prob_for_budget(space: Space, budget_macs: float, rng: random.Random, n: int = 1000,
                             start: float = 0.5, step: float = 0.01) -> tuple[float, float, list]:
    """ViTAS v1's identity probability for a budget C: the p whose random sub-networks average
    between 0.9 C and C MACs.

    Start at `start`, draw `n` sub-networks, and move p by `step` (up while their mean MACs is
    above C, down while it is below 0.9 C) until the mean lies in [0.9 C, C]. Returns (p, that mean,
    the trace of (p, mean) pairs visited). Deterministic given `rng`'s state.
    """
    lo, hi = 0.9 * budget_macs, budget_macs
    mean_macs = lambda p: sum(space.macs(space.sample(rng, p)) for _ in range(n)) / n
    k, trace = 0, []  # p = start + k * step: an integer grid, so repeated steps do not drift
    for _ in range(3 * round(1 / step)):  # a monotone walk needs under 1 / step steps
        p = round(start + k * step, 10)
        if not 0 <= p <= 1:
            # Measure the other end too, so the message can give the whole reachable range.
            at = dict(trace)
            low = at[1.0] if 1.0 in at else mean_macs(1.0)
            high = at[0.0] if 0.0 in at else mean_macs(0.0)
            raise SpaceError(
                f"supernet.identity_prob: budget: no identity probability in [0, 1] brings the mean "
                f"MACs of random sub-networks into [0.9 C, C] = [{format_macs(lo)}, {format_macs(hi)}]"
                f"; they range from {format_macs(low)} (p = 1) to {format_macs(high)} (p = 0), so "
                f"use a budget in about [{format_macs(low)}, {format_macs(high / 0.9)}] or a number "
                "for supernet.identity_prob")
        mean = mean_macs(p)
        trace.append((p, mean))
        if mean > hi:
            k += 1
        elif mean < lo:
            k -= 1
        else:
            return p, mean, trace
    raise SpaceError(
        f"supernet.identity_prob: budget: the mean MACs of random sub-networks keeps jumping over "
        f"[{format_macs(lo)}, {format_macs(hi)}] between neighbouring probabilities (last p = "
        f"{trace[-1][0]}); one step of {step} moves it more than the window is wide: set "
        "supernet.identity_prob to a number")


@lru_cache(maxsize=16)  # a stage asks more than once (training, then its health check or search)
def _budget_identity_prob(space: Space, budget_macs: float, seed: int) -> tuple[float, float, tuple]:
    rng = random.Random(f"{seed}-identity-prob")  # the same p in every stage that asks
    p, mean, trace = identity_prob_for_budget(space, budget_macs, rng, n=IDENTITY_PROB_SAMPLES)
    return p, mean, tuple(trace)


def supernet_budget(cfg: dict, budget: str | None) -> str | None:
    """The budget whose supernet serves a search under `budget`: its own (`supernet.per_budget`,
    as ViTAS trains one per budget), or None for the one supernet shared by every budget."""
    return budget if cfg["supernet"]["per_budget"] else None


def window(cfg: dict, budget: str) -> tuple[float, float]:
    """The search window [min_budget_fraction x C, C] of budget C, in MACs."""
    c = parse_macs(budget)
    return cfg["search"]["min_budget_fraction"] * c, c


def sampling_record(cfg: dict, space: Space, budget: str | None = None) -> dict:
    """How the supernet of `budget` (None: the shared supernet) draws its sub-networks, for
    training, its health check and the search's random draws; logged as identity_prob.json.

    - "layerwise": `supernet.identity_prob` as a number, or "budget": ViTAS v1's search of the
      probability whose random sub-networks average within [0.9 C, C] (the shared supernet: C is
      the smallest budget, so the small networks the tightest search needs are sampled enough);
    - "depth": a depth uniform from min_depth to the deepest network any of the windows holds.
    """
    names = [budget] if budget else list(cfg["search"]["budgets"])
    record = {"sampling": space.sampling, "budget": budget or "shared"}
    latency = cfg["search"].get("constraint", "macs") == "latency"  # no MACs window: the whole space
    if space.sampling == "depth":
        deepest = (space.deepest_in_window(0, float("inf")) if latency
                   else max(space.deepest_in_window(*window(cfg, b)) for b in names))
        top = max(deepest, space.min_depth)
        return record | {"identity_prob": None, "max_depth": top, "source": "depth",
                         "depth_range": [space.min_depth, top]}
    value = cfg["supernet"]["identity_prob"]
    if value != "budget":
        return record | {"identity_prob": float(value), "max_depth": None, "source": "config"}
    if latency:
        raise SpaceError("supernet.identity_prob: budget needs MACs budgets, but search.constraint is latency; "
                         "set supernet.identity_prob to a number (or supernet.sampling: depth)")
    name = min(names, key=parse_macs)
    budget_macs = parse_macs(name)
    p, mean, trace = _budget_identity_prob(space, budget_macs, cfg["seed"])
    return record | {"identity_prob": p, "max_depth": None, "source": "budget", "budget_macs": budget_macs,
                     "prob_budget": name, "mean_macs": mean, "window": [0.9 * budget_macs, budget_macs],
                     "samples": IDENTITY_PROB_SAMPLES, "trace": [{"p": q, "mean_macs": m} for q, m in trace]}


@dataclass(frozen=True)
class Sampler:
    """How one supernet draws sub-networks (see `sampling_record`); the same in its training, its
    health check and the searches that read it."""

    space: Space
    identity_prob: float | None  # None with depth sampling, which draws no identities
    max_depth: int | None

    @classmethod
    def from_record(cls, space: Space, record: dict) -> "Sampler":
        return cls(space, record["identity_prob"], record["max_depth"])

    def __call__(self, rng: random.Random) -> Arch:
        return self.space.sample(rng, self.identity_prob or 0.0, self.max_depth)

    def many(self, rngs: list[random.Random]) -> list[Arch]:
        """One step's sub-networks, one per generator (`Space.sample_many`)."""
        return self.space.sample_many(rngs, self.identity_prob or 0.0, self.max_depth)

    def within(self, rng: random.Random, lo: float, hi: float) -> Arch:
        return self.space.sample_within(rng, lo, hi, self.identity_prob or 0.0, max_depth=self.max_depth)


def sampler(cfg: dict, space: Space, budget: str | None = None) -> Sampler:
    return Sampler.from_record(space, sampling_record(cfg, space, budget))
