"""Search spaces: the choices per dimension, and what the search needs of them.

A space samples, mutates and crosses over `Arch` values, and counts their MACs and parameters
analytically; `sampling_record` / `sampler` turn the `supernet` switches (layer-wise draws with a
given or budget-driven identity probability, or a uniform depth) into how one supernet samples. Torch-free, so
the Snakefile can check budgets before anything runs.

MACs follow timm's convention, i.e. what `torch.utils.flop_counter` measures / 2 on the exported
model with explicit-matmul attention: patch-embedding conv, QKV, QK^T, A.V, projection, MLP and the
classifier on the class token; LayerNorm, softmax, GELU and additions are not counted.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

from .arch import Arch, Layer

# Per dataset: input channels, classes and native image size (the config may resize).
DATASETS = {
    "fashion_mnist": {"in_chans": 1, "num_classes": 10, "img_size": 28},
    "imagenet": {"in_chans": 3, "num_classes": 1000, "img_size": 224},
}

# Rejection draws in `ViTSpace.sample` before it draws the depth directly. Plain rejection is what
# earlier versions did (same random stream, same architectures); 20 failures in a row need p near 1.
REJECTION_TRIES = 20
IDENTITY_PROB_SAMPLES = 1000  # random sub-networks per step of ViTAS's identity-probability search


class SpaceError(ValueError):
    """A search space or budget that cannot work; the message names the cause and the fix."""


def parse_macs(text) -> float:
    """'1.3G' -> 1.3e9, '850M' -> 8.5e8, '12K' -> 1.2e4; plain numbers pass through."""
    if isinstance(text, (int, float)):
        return float(text)
    units = {"K": 1e3, "M": 1e6, "G": 1e9}
    s = str(text).strip()
    if s and s[-1].upper() in units:
        return float(s[:-1]) * units[s[-1].upper()]
    return float(s)


def format_macs(macs: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if macs >= scale:
            return f"{macs / scale:.4g}{unit}"
    return f"{macs:.0f}"


@dataclass(frozen=True)
class ViTSpace:
    """The single-stage, DeiT-style space of ViTAS: per network a patch size and a token width;
    per layer a block (heads, QKV width, MLP width) or an identity."""

    patch_sizes: tuple[int, ...]
    embed_dims: tuple[int, ...]
    max_layers: int
    min_depth: int
    heads: tuple[int, ...]
    qkv_dims: tuple[int, ...]
    mlp_dims: tuple[int, ...]
    img_size: int
    in_chans: int
    num_classes: int
    identity_shifting: bool = True
    sampling: str = "layerwise"  # per-layer identity draws, or "depth": a uniform depth first

    @classmethod
    def from_config(cls, cfg: dict) -> "ViTSpace":
        space, data = cfg["space"], cfg["data"]
        info = DATASETS[data["dataset"]]
        sp = cls(
            patch_sizes=tuple(sorted(space["patch_sizes"])),
            embed_dims=tuple(sorted(space["embed_dims"])),
            max_layers=space["max_layers"],
            min_depth=space["min_depth"],
            heads=tuple(sorted(space["heads"])),
            qkv_dims=tuple(sorted(space["qkv_dims"])),
            mlp_dims=tuple(sorted(space["mlp_dims"])),
            img_size=data.get("img_size") or info["img_size"],
            in_chans=info["in_chans"],
            num_classes=info["num_classes"],
            identity_shifting=cfg["supernet"]["identity_shifting"],
            sampling=cfg["supernet"]["sampling"],
        )
        sp.check()
        return sp

    def check(self) -> None:
        for p in self.patch_sizes:
            if self.img_size % p:
                raise SpaceError(f"space.patch_sizes: {p} does not divide the image size "
                                 f"{self.img_size}; use divisors of {self.img_size}")
        bad = [(h, q) for h in self.heads for q in self.qkv_dims if q % h]
        if bad:
            h, q = bad[0]
            raise SpaceError(f"space.heads/qkv_dims: {h} heads do not divide QKV width {q}; every "
                             f"QKV width must be a multiple of every head count {list(self.heads)}")
        if not 1 <= self.min_depth <= self.max_layers:
            raise SpaceError(f"space.min_depth: {self.min_depth} must lie in [1, max_layers="
                             f"{self.max_layers}]")

    # ---------------------------------------------------------------- validity and canonical form
    def contains(self, arch: Arch) -> bool:
        return (arch.patch in self.patch_sizes and arch.embed in self.embed_dims
                and len(arch.layers) == self.max_layers and arch.depth >= self.min_depth
                and all(l.heads in self.heads and l.qkv in self.qkv_dims and l.mlp in self.mlp_dims
                        for l in arch.layers))

    def canonical(self, arch: Arch) -> Arch:
        return arch.shifted() if self.identity_shifting else arch

    def key(self, arch: Arch) -> tuple:
        return arch.key(shifting=self.identity_shifting)

    # ---------------------------------------------------------------- genes
    def _gene_choices(self) -> list[tuple]:
        per_layer = [(False, True), self.heads, self.qkv_dims, self.mlp_dims]
        return [self.patch_sizes, self.embed_dims] + per_layer * self.max_layers

    @staticmethod
    def _genes(arch: Arch) -> list:
        genes = [arch.patch, arch.embed]
        for l in arch.layers:
            genes += [l.identity, l.heads, l.qkv, l.mlp]
        return genes

    def _from_genes(self, genes: list) -> Arch:
        layers = tuple(Layer(heads=genes[i + 1], qkv=genes[i + 2], mlp=genes[i + 3],
                             identity=genes[i]) for i in range(2, len(genes), 4))
        return self.canonical(Arch(patch=genes[0], embed=genes[1], layers=layers))

    # ---------------------------------------------------------------- sampling and evolution
    def sample(self, rng: random.Random, identity_prob: float = 0.5, max_depth: int | None = None) -> Arch:
        """A random sub-network, every width choice uniform. The layers depend on `sampling`:

        - "layerwise" (ViTAS): each layer is an identity with `identity_prob`, conditioned on at
          least `min_depth` blocks (at `identity_prob` 1: exactly `min_depth`);
        - "depth" (AutoFormer): a depth uniform in [min_depth, max_depth] (default: max_layers),
          and the first that many layers are blocks; `identity_prob` is not used.
        """
        if self.sampling == "depth":
            top = self.max_layers if max_depth is None else min(max(max_depth, self.min_depth), self.max_layers)
            depth = rng.randint(self.min_depth, top)
            layers = tuple(Layer(heads=rng.choice(self.heads), qkv=rng.choice(self.qkv_dims),
                                 mlp=rng.choice(self.mlp_dims), identity=i >= depth)
                           for i in range(self.max_layers))
            return self.canonical(Arch(patch=rng.choice(self.patch_sizes), embed=rng.choice(self.embed_dims),
                                       layers=layers))
        for _ in range(REJECTION_TRIES):
            layers = tuple(Layer(heads=rng.choice(self.heads), qkv=rng.choice(self.qkv_dims),
                                 mlp=rng.choice(self.mlp_dims), identity=rng.random() < identity_prob)
                           for _ in range(self.max_layers))
            arch = Arch(patch=rng.choice(self.patch_sizes), embed=rng.choice(self.embed_dims),
                        layers=layers)
            if arch.depth >= self.min_depth:
                return self.canonical(arch)
        # Near p = 1 rejection takes thousands of draws (at p = 1 it never ends): draw the depth
        # from its binomial truncated to [min_depth, max_layers] instead, the same distribution.
        n, p = self.max_layers, identity_prob
        depths = range(self.min_depth, n + 1)
        weights = [math.comb(n, d) * (1 - p) ** d * p ** (n - d) for d in depths]
        depth = rng.choices(depths, weights)[0] if sum(weights) > 0 else self.min_depth
        active = set(rng.sample(range(n), depth))
        layers = tuple(Layer(heads=rng.choice(self.heads), qkv=rng.choice(self.qkv_dims),
                             mlp=rng.choice(self.mlp_dims), identity=i not in active) for i in range(n))
        arch = Arch(patch=rng.choice(self.patch_sizes), embed=rng.choice(self.embed_dims), layers=layers)
        return self.canonical(arch)

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        """Resample each gene with probability `prob` (rejecting results below `min_depth`)."""
        choices = self._gene_choices()
        while True:
            genes = [rng.choice(c) if rng.random() < prob else g
                     for g, c in zip(self._genes(arch), choices)]
            child = self._from_genes(genes)
            if child.depth >= self.min_depth:
                return child

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Two-point crossover of the gene strings (layer genes keep their positions)."""
        ga, gb = self._genes(a), self._genes(b)
        while True:
            i, j = sorted(rng.sample(range(len(ga) + 1), 2))
            child = self._from_genes(ga[:i] + gb[i:j] + ga[j:])
            if child.depth >= self.min_depth:
                return child

    # ---------------------------------------------------------------- counting
    def tokens(self, patch: int) -> int:
        return (self.img_size // patch) ** 2 + 1  # patches + class token

    def macs(self, arch: Arch, convention: str = "timm") -> int:
        """MACs of `arch`. "timm": what the exported model does (the counter every table uses).
        "vitas": the released ViTAS code's counter, for comparing with its published numbers: no
        class token in the blocks, and the classifier counted once per patch (x196 at 224 px)."""
        n, e = self.tokens(arch.patch), arch.embed
        patches = n - 1
        if convention == "vitas":
            n = patches
        total = patches * e * self.in_chans * arch.patch ** 2  # patch embedding
        for l in arch.blocks:
            total += n * e * 3 * l.qkv       # QKV projection
            total += 2 * n * n * l.qkv       # QK^T and A.V over all heads
            total += n * l.qkv * e           # output projection
            total += 2 * n * e * l.mlp       # MLP
        head = e * self.num_classes          # classifier on the class token
        return total + (head * patches if convention == "vitas" else head)

    def params(self, arch: Arch) -> int:
        n, e = self.tokens(arch.patch), arch.embed
        total = self.in_chans * arch.patch ** 2 * e + e + e + n * e  # patch embed, cls, pos
        for l in arch.blocks:
            total += 4 * e                               # two LayerNorms
            total += e * 3 * l.qkv + 3 * l.qkv           # QKV
            total += l.qkv * e + e                       # projection
            total += e * l.mlp + l.mlp + l.mlp * e + e   # MLP
        return total + 2 * e + e * self.num_classes + self.num_classes  # final norm, head

    def smallest(self) -> Arch:
        """The architecture with the fewest MACs."""
        best = None
        for p in self.patch_sizes:
            arch = Arch.uniform(p, self.embed_dims[0], self.min_depth, self.heads[0],
                                self.qkv_dims[0], self.mlp_dims[0], self.max_layers)
            if best is None or self.macs(arch) < self.macs(best):
                best = arch
        return best

    def largest(self) -> Arch:
        """The architecture with the most MACs."""
        return max((Arch.uniform(p, self.embed_dims[-1], self.max_layers, self.heads[-1],
                                 self.qkv_dims[-1], self.mlp_dims[-1]) for p in self.patch_sizes),
                   key=self.macs)

    def macs_range(self) -> tuple[int, int]:
        return self.macs(self.smallest()), self.macs(self.largest())

    def check_budget(self, name: str, budget: float) -> None:
        lo, hi = self.macs_range()
        if not lo <= budget <= hi:
            raise SpaceError(f"search.budgets: {name} ({budget:.4g} MACs) lies outside the space's "
                             f"MACs range [{format_macs(lo)}, {format_macs(hi)}]; choose budgets "
                             "inside it or widen space.*")

    def depth_macs_range(self, depth: int) -> tuple[int, int]:
        """The fewest and the most MACs of any network of exactly `depth` blocks."""
        at = lambda p, i: Arch.uniform(p, self.embed_dims[i], depth, self.heads[i], self.qkv_dims[i],
                                       self.mlp_dims[i], self.max_layers)
        return (min(self.macs(at(p, 0)) for p in self.patch_sizes),
                max(self.macs(at(p, -1)) for p in self.patch_sizes))

    def deepest_in_window(self, lo: float, hi: float) -> int:
        """The largest depth of a network whose MACs can lie in [lo, hi] (0 if none can)."""
        for depth in range(self.max_layers, self.min_depth - 1, -1):
            fewest, most = self.depth_macs_range(depth)
            if fewest <= hi and most >= lo:
                return depth
        return 0

    def usable_layers(self, lo: float, hi: float) -> int:
        """How many leading layers a network in the window [lo, hi] can use: with identity shifting
        depth d uses layers 0..d-1; without it a block may sit in any layer."""
        deepest = self.deepest_in_window(lo, hi)
        return deepest if self.identity_shifting or deepest == 0 else self.max_layers

    def usage(self, archs) -> dict:
        """How often each layer computed something and each choice was used over `archs` (the
        sub-networks of the training steps): fractions of the steps (width choices: of the active
        layers)."""
        n = max(len(archs), 1)
        active = [0] * self.max_layers
        counts = {dim: {v: 0 for v in values} for dim, values in (
            ("patch", self.patch_sizes), ("embed", self.embed_dims), ("heads", self.heads),
            ("qkv", self.qkv_dims), ("mlp", self.mlp_dims))}
        for arch in archs:
            counts["patch"][arch.patch] += 1
            counts["embed"][arch.embed] += 1
            for i, layer in enumerate(arch.layers):
                if not layer.identity:
                    active[i] += 1
                    for dim in ("heads", "qkv", "mlp"):
                        counts[dim][getattr(layer, dim)] += 1
        blocks = max(sum(active), 1)
        return {"steps": len(archs), "layer_active": [a / n for a in active],
                "choices": {dim: {str(v): c / (n if dim in ("patch", "embed") else blocks)
                                  for v, c in per.items()} for dim, per in counts.items()}}

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


def build_space(cfg: dict) -> ViTSpace:
    family = cfg["space"]["family"]
    if family != "vit":
        raise SpaceError(f"space.family: unknown family {family!r}; allowed: vit")
    return ViTSpace.from_config(cfg)


def identity_prob_for_budget(space: ViTSpace, budget_macs: float, rng: random.Random, n: int = 1000,
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
def _budget_identity_prob(space: ViTSpace, budget_macs: float, seed: int) -> tuple[float, float, tuple]:
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


def sampling_record(cfg: dict, space: ViTSpace, budget: str | None = None) -> dict:
    """How the supernet of `budget` (None: the shared supernet) draws its sub-networks, for
    training, its health check and the search's random draws; logged as identity_prob.json.

    - "layerwise": `supernet.identity_prob` as a number, or "budget": ViTAS v1's search of the
      probability whose random sub-networks average within [0.9 C, C] (the shared supernet: C is
      the smallest budget, so the small networks the tightest search needs are sampled enough);
    - "depth": a depth uniform from min_depth to the deepest network any of the windows holds.
    """
    names = [budget] if budget else list(cfg["search"]["budgets"])
    record = {"sampling": space.sampling, "budget": budget or "shared"}
    if space.sampling == "depth":
        deepest = max(space.deepest_in_window(*window(cfg, b)) for b in names)
        top = max(deepest, space.min_depth)
        return record | {"identity_prob": None, "max_depth": top, "source": "depth",
                         "depth_range": [space.min_depth, top]}
    value = cfg["supernet"]["identity_prob"]
    if value != "budget":
        return record | {"identity_prob": float(value), "max_depth": None, "source": "config"}
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

    space: ViTSpace
    identity_prob: float | None  # None with depth sampling, which draws no identities
    max_depth: int | None

    @classmethod
    def from_record(cls, space: ViTSpace, record: dict) -> "Sampler":
        return cls(space, record["identity_prob"], record["max_depth"])

    def __call__(self, rng: random.Random) -> Arch:
        return self.space.sample(rng, self.identity_prob or 0.0, self.max_depth)

    def within(self, rng: random.Random, lo: float, hi: float) -> Arch:
        return self.space.sample_within(rng, lo, hi, self.identity_prob or 0.0, max_depth=self.max_depth)


def sampler(cfg: dict, space: ViTSpace, budget: str | None = None) -> Sampler:
    return Sampler.from_record(space, sampling_record(cfg, space, budget))
