"""ViTAS's single-stage, DeiT-style space: per network a patch size and a token width; per layer a
block (heads, QKV width, MLP width) or an identity. Torch-free.

MACs ("timm"): patch-embedding conv, QKV, QK^T, A.V, projection, MLP and the classifier on the
class token. "vitas": the released ViTAS code's counter, for comparing with its published numbers.
"""
from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass

from ...arch import Arch, Layer
from ...spaces import REJECTION_TRIES, LatencyBlock, Space, SpaceError, data_info


def macs(arch: Arch, img_size: int, in_chans: int, num_classes: int, convention: str = "timm") -> int:
    """MACs of single-stage `arch`. "timm": what the exported model does (the counter every table
    uses). "vitas": the released ViTAS code's counter: no class token in the blocks, and the
    classifier counted once per patch (x196 at 224 px)."""
    patches = (img_size // arch.patch) ** 2
    n, e = patches + 1, arch.embed  # patches + class token
    if convention == "vitas":
        n = patches
    total = patches * e * in_chans * arch.patch ** 2  # patch embedding
    for l in arch.blocks:
        total += n * e * 3 * l.qkv       # QKV projection
        total += 2 * n * n * l.qkv       # QK^T and A.V over all heads
        total += n * l.qkv * e           # output projection
        total += 2 * n * e * l.mlp       # MLP
    head = e * num_classes               # classifier on the class token
    return total + (head * patches if convention == "vitas" else head)


def params(arch: Arch, img_size: int, in_chans: int, num_classes: int) -> int:
    n, e = (img_size // arch.patch) ** 2 + 1, arch.embed
    total = in_chans * arch.patch ** 2 * e + e + e + n * e  # patch embed, cls, pos
    for l in arch.blocks:
        total += 4 * e                               # two LayerNorms
        total += e * 3 * l.qkv + 3 * l.qkv           # QKV
        total += l.qkv * e + e                       # projection
        total += e * l.mlp + l.mlp + l.mlp * e + e   # MLP
    return total + 2 * e + e * num_classes + num_classes  # final norm, head


@dataclass(frozen=True)
class ViTSpace(Space):
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
    family = "vit"
    conventions = ("timm", "vitas")
    crossover_kind = "two_point"

    @classmethod
    def from_config(cls, cfg: dict) -> "ViTSpace":
        space, data = cfg["space"], cfg["data"]
        info = data_info(data)
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
        return self.canonical(Arch.single(genes[0], genes[1], layers, self.family))

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
            return self.canonical(Arch.single(rng.choice(self.patch_sizes), rng.choice(self.embed_dims), layers,
                                              self.family))
        for _ in range(REJECTION_TRIES):
            layers = tuple(Layer(heads=rng.choice(self.heads), qkv=rng.choice(self.qkv_dims),
                                 mlp=rng.choice(self.mlp_dims), identity=rng.random() < identity_prob)
                           for _ in range(self.max_layers))
            arch = Arch.single(rng.choice(self.patch_sizes), rng.choice(self.embed_dims), layers, self.family)
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
        arch = Arch.single(rng.choice(self.patch_sizes), rng.choice(self.embed_dims), layers, self.family)
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

    # ---------------------------------------------------------------- counting
    def tokens(self, patch: int) -> int:
        return (self.img_size // patch) ** 2 + 1  # patches + class token

    def macs(self, arch: Arch, convention: str = "timm") -> int:
        self.check_convention(convention)
        return macs(arch, self.img_size, self.in_chans, self.num_classes, convention)

    def params(self, arch: Arch) -> int:
        return params(arch, self.img_size, self.in_chans, self.num_classes)

    def smallest(self) -> Arch:
        """The architecture with the fewest MACs."""
        best = None
        for p in self.patch_sizes:
            arch = Arch.uniform(p, self.embed_dims[0], self.min_depth, self.heads[0],
                                self.qkv_dims[0], self.mlp_dims[0], self.max_layers, family=self.family)
            if best is None or self.macs(arch) < self.macs(best):
                best = arch
        return best

    def largest(self) -> Arch:
        """The architecture with the most MACs."""
        return max((Arch.uniform(p, self.embed_dims[-1], self.max_layers, self.heads[-1],
                                 self.qkv_dims[-1], self.mlp_dims[-1], family=self.family)
                    for p in self.patch_sizes),
                   key=self.macs)

    def depth_macs_range(self, depth: int) -> tuple[int, int]:
        """The fewest and the most MACs of any network of exactly `depth` blocks."""
        at = lambda p, i: Arch.uniform(p, self.embed_dims[i], depth, self.heads[i], self.qkv_dims[i],
                                       self.mlp_dims[i], self.max_layers, family=self.family)
        return (min(self.macs(at(p, 0)) for p in self.patch_sizes),
                max(self.macs(at(p, -1)) for p in self.patch_sizes))

    def deepest_in_window(self, lo: float, hi: float) -> int:
        """The largest depth of a network whose MACs can lie in [lo, hi] (0 if none can)."""
        for depth in range(self.max_layers, self.min_depth - 1, -1):
            fewest, most = self.depth_macs_range(depth)
            if fewest <= hi and most >= lo:
                return depth
        return 0

    def layer_slots(self) -> list[str]:
        return [f"{i}" for i in range(self.max_layers)]

    def usable_layers(self, lo: float, hi: float) -> list[int]:
        """The layers a network in the window [lo, hi] can use: with identity shifting depth d
        uses layers 0..d-1; without it a block may sit in any layer."""
        deepest = self.deepest_in_window(lo, hi)
        return list(range(deepest if self.identity_shifting or deepest == 0 else self.max_layers))

    def choices(self) -> dict[str, tuple]:
        return {"patch": self.patch_sizes, "embed": self.embed_dims, "heads": self.heads,
                "qkv": self.qkv_dims, "mlp": self.mlp_dims}

    def arch_choices(self, arch: Arch):
        """(dimension, value, per-layer?) of every choice `arch` makes."""
        yield "patch", arch.patch, False
        yield "embed", arch.embed, False
        for layer in arch.blocks:
            yield from (("heads", layer.heads, True), ("qkv", layer.qkv, True), ("mlp", layer.mlp, True))

    # ---------------------------------------------------------------- latency (vitnas.latency_table)
    def _stem(self, patch: int, embed: int) -> LatencyBlock:
        """Everything but the blocks, timed as the real network with no block: patch embedding,
        class token, position embedding, final norm, head and the call's own overhead."""
        return LatencyBlock(("stem", patch, embed), functools.partial(_stem_module, self, patch, embed),
                            (self.in_chans, self.img_size, self.img_size))

    def latency_blocks(self, arch: Arch) -> list[LatencyBlock]:
        """The network without blocks, then one timm Block per computing layer."""
        n = self.tokens(arch.patch)
        return [self._stem(arch.patch, arch.embed)] + [
            block_part(n, arch.embed, l.heads, l.qkv, l.mlp) for l in arch.blocks]

    def all_latency_blocks(self) -> list[LatencyBlock]:
        """Every stem and block shape of the space (patch x embed, and x heads x qkv x mlp)."""
        out = [self._stem(p, e) for p, e in itertools.product(self.patch_sizes, self.embed_dims)]
        return out + [block_part(self.tokens(p), e, h, q, m) for p, e, h, q, m in itertools.product(
            self.patch_sizes, self.embed_dims, self.heads, self.qkv_dims, self.mlp_dims)]


def _stem_module(space: ViTSpace, patch: int, embed: int):
    from .model import ViT

    return ViT(Arch.uniform(patch, embed, 0, space.heads[0], space.qkv_dims[0], space.mlp_dims[0],
                            space.max_layers, family=space.family), space.img_size, space.in_chans,
               space.num_classes)


def block_part(tokens: int, embed: int, heads: int, qkv: int, mlp: int) -> LatencyBlock:
    """A timm Block of these widths on `tokens` tokens (the multi-stage families' blocks too)."""
    return LatencyBlock(("block", tokens, embed, heads, qkv, mlp),
                        functools.partial(_block_module, embed, heads, qkv, mlp), (tokens, embed), chain=True)


def _block_module(embed: int, heads: int, qkv: int, mlp: int):
    from .model import make_block

    return make_block(embed, Layer(heads=heads, qkv=qkv, mlp=mlp))
