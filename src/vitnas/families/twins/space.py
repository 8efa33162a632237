"""ViTAS's Twins-based hierarchical space (Chu et al., "Twins: Revisiting the Design of Spatial
Attention in Vision Transformers"; timm's `twins.py`): stages joined by patch merging (a strided
conv + LayerNorm: stride `patch` first, then 2), each a run of blocks that alternate
locally-grouped self-attention (LSA, attention within ws x ws windows) and global sub-sampled
attention (GSA, keys and values from an sr x sr strided conv of the tokens), with a depthwise 3x3
conv (conditional position encoding, timm's `PosConv`) after the first block of each stage. No
class token, no position table: the classifier reads the mean token.

Per stage: a token width, a window `ws` (1 = every block GSA, Twins-PCPVT; > 1 = LSA, GSA, LSA,
... Twins-SVT) and a sub-sampling ratio `sr`; per block a head count (of the stage's width: the
head dimension is width / heads, as in timm's attention classes), an MLP ratio (hidden width
int(ratio x width), as timm) and, at the stage's removable positions, whether it is skipped. A
block's kind follows its index among the stage's computing blocks (LSA at even indices when
ws > 1), so every network is a plain Twins network whatever positions its identities hold.

Identity shifting (`supernet.identity_shifting`, ViTAS v2): identities move to the end of their
stage, so a stage of depth d uses the supernet's first d blocks and each depth is one network; only
the number of removable positions matters then (the last ones). Without it identities keep their
positions, as in the ViT-ResNAS family. Torch-free.

MACs ("timm"): what `torch.utils.flop_counter` measures / 2 on the exported model (attention
unfused): patch-merging convs, per block Q/K/V, QK^T, A.V, projection, the GSA sub-sampling conv
and MLP, the depthwise position conv, the classifier; LayerNorm, softmax, GELU, the mean and
additions are not counted, nor are biases. LSA pads the token grid to whole windows (timm pads
with zeros on the right and bottom), and the counter sees the padded work: QKV and attention over
ceil(side / ws)^2 ws^2 tokens, the projection over the real ones. The sub-sampling conv floors
(side // sr). Checked against timm's own models: twins_svt_small 2.9274 G, twins_pcpvt_small
3.8095 G, twins_svt_base 8.5626 G.
"""
from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass
from functools import lru_cache

from ...arch import Arch, Layer, Stage
from ... import families
from ...spaces import LatencyBlock, SpaceError, StagedSpace, data_info

CONVENTIONS = ("timm",)


def token_sides(patch: int, img_size: int, n_stages: int) -> list[int]:
    """Side of every stage's token grid: the first patch merging divides the image by `patch`,
    each later one by 2 (convs without padding: floor)."""
    sides, side = [], img_size
    for s in range(n_stages):
        side //= patch if s == 0 else 2
        sides.append(side)
    return sides


def is_local(ws: int | None, index: int) -> bool:
    """Whether the block at `index` among its stage's computing blocks is locally-grouped
    attention (timm's Twins: ws > 1 at even indices), else global sub-sampled attention."""
    return (ws or 1) > 1 and index % 2 == 0


def attention_macs(side: int, e: int, local: bool, ws: int, sr: int) -> int:
    """MACs of one LSA or GSA of width e on a side x side grid (see the module docstring)."""
    n = side * side
    if local:
        padded = (-(-side // ws) * ws) ** 2  # the grid padded to whole windows
        return padded * e * 3 * e + 2 * padded * ws * ws * e + n * e * e  # QKV, QK^T + A.V, proj
    kv = (side // sr) ** 2 if sr > 1 else n
    total = n * e * e + kv * 2 * e * e + 2 * n * kv * e + n * e * e  # Q, KV, QK^T + A.V, proj
    return total + (kv * e * e * sr * sr if sr > 1 else 0)  # the sub-sampling conv


def macs(arch: Arch, img_size: int, in_chans: int, num_classes: int, convention: str = "timm") -> int:
    """MACs of `arch` on img_size x img_size inputs (the "timm" convention: see the module
    docstring)."""
    if convention not in CONVENTIONS:
        raise SpaceError(f"convention {convention!r} is not known for the twins family; choose one of "
                         f"{', '.join(CONVENTIONS)}")
    total, c = 0, in_chans
    for s, (stage, side) in enumerate(zip(arch.stages, token_sides(arch.patch, img_size, len(arch.stages)))):
        k, e, n = arch.patch if s == 0 else 2, stage.embed, side * side
        total += n * e * c * k * k  # patch merging
        for j, layer in enumerate(stage.blocks):
            total += attention_macs(side, e, is_local(stage.ws, j), stage.ws or 1, stage.sr or 1)
            total += 2 * n * e * layer.mlp  # MLP
            if j == 0:
                total += n * e * 9  # depthwise position conv
        c = e
    return total + c * num_classes  # classifier on the mean token


def params(arch: Arch, img_size: int, in_chans: int, num_classes: int) -> int:
    """Parameters of the stand-alone model (= timm's Twins for a uniform architecture)."""
    total, c = 0, in_chans
    for s, stage in enumerate(arch.stages):
        k, e, sr = arch.patch if s == 0 else 2, stage.embed, stage.sr or 1
        total += c * e * k * k + e + 2 * e  # patch-merging conv, its LayerNorm
        total += 9 * e + e                  # depthwise position conv
        for j, layer in enumerate(stage.blocks):
            total += 4 * e                                           # two LayerNorms
            total += 4 * e * e + 4 * e                               # QKV (or Q and KV), projection
            if not is_local(stage.ws, j) and sr > 1:
                total += e * e * sr * sr + e + 2 * e                 # sub-sampling conv, its LayerNorm
            total += e * layer.mlp + layer.mlp + layer.mlp * e + e   # MLP
        c = e
    return total + 2 * c + c * num_classes + num_classes  # final norm, head


@dataclass(frozen=True)
class StageChoices:
    """One stage of the space: its choices (ascending) and its layout."""

    embed_dims: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    blocks: int
    removable: tuple[int, ...] = ()
    wss: tuple[int, ...] = (1,)
    sr_ratios: tuple[int, ...] = (1,)

    @staticmethod
    def mlp(embed: int, ratio: float) -> int:
        return int(embed * ratio)  # as timm's Block

    def ratio(self, embed: int, mlp: int) -> float | None:
        """The MLP-ratio choice that gives `mlp` hidden units at width `embed` (None: none)."""
        return next((r for r in self.mlp_ratios if self.mlp(embed, r) == mlp), None)


@dataclass(frozen=True)
class TwinsSpace(StagedSpace):
    """The Twins space: a fixed first patch size; per stage a token width, window and
    sub-sampling ratio; per block heads, an MLP ratio and a skip flag at removable positions."""

    patch: int
    stages: tuple[StageChoices, ...]
    img_size: int
    in_chans: int
    num_classes: int
    identity_shifting: bool = True
    sampling: str = "layerwise"  # per-block skip draws, or "depth": a uniform depth first
    family = "twins"
    conventions = CONVENTIONS
    crossover_kind = "two_point"  # as ViTAS

    @classmethod
    def from_config(cls, cfg: dict) -> "TwinsSpace":
        space, data = cfg["space"], cfg["data"]
        info = data_info(data)
        stages = tuple(StageChoices(embed_dims=tuple(sorted(st["embed_dims"])), heads=tuple(sorted(st["heads"])),
                                    mlp_ratios=tuple(sorted(st["mlp_ratios"])), blocks=st["blocks"],
                                    removable=tuple(sorted(st.get("removable", ()))),
                                    wss=tuple(sorted(st.get("wss", (1,)))),
                                    sr_ratios=tuple(sorted(st.get("sr_ratios", (1,)))))
                       for st in space["stages"])
        sp = cls(patch=space["patch"], stages=stages, img_size=data.get("img_size") or info["img_size"],
                 in_chans=info["in_chans"], num_classes=info["num_classes"],
                 identity_shifting=cfg["supernet"]["identity_shifting"], sampling=cfg["supernet"]["sampling"])
        sp.check()
        return sp

    def check(self) -> None:
        if not self.stages:
            raise SpaceError("space.stages: at least one stage is needed")
        if self.img_size % self.patch:
            raise SpaceError(f"space.patch: {self.patch} does not divide the image size {self.img_size}; "
                             f"use a divisor of {self.img_size}")
        sides = token_sides(self.patch, self.img_size, len(self.stages))
        for s in range(1, len(self.stages)):
            if sides[s - 1] % 2:
                raise SpaceError(f"space.stages[{s}]: its patch merging halves a {sides[s - 1]}x{sides[s - 1]} token "
                                 "grid, which timm's Twins PatchEmbed refuses (odd side); use fewer stages, another "
                                 "space.patch or data.img_size")
        for s, (st, side) in enumerate(zip(self.stages, sides)):
            where = f"space.stages[{s}]"
            bad = [p for p in st.removable if not 0 <= p < st.blocks]
            if bad:
                raise SpaceError(f"{where}.removable: position {bad[0]} does not exist in a stage of {st.blocks} "
                                 f"blocks; use positions 0 to {st.blocks - 1}")
            if len(set(st.removable)) != len(st.removable):
                raise SpaceError(f"{where}.removable: positions repeat; list each once")
            if len(st.removable) >= st.blocks:
                raise SpaceError(f"{where}.removable: every block of the stage may be skipped; a stage keeps at "
                                 "least one (its position conv follows its first block): remove a position")
            bad = [(h, e) for h in st.heads for e in st.embed_dims if e % h]
            if bad:
                raise SpaceError(f"{where}.heads: {bad[0][0]} heads do not divide the width {bad[0][1]} (the "
                                 f"head dimension is width / heads); use head counts dividing every one of "
                                 f"{list(st.embed_dims)}")
            if any(st.mlp(e, r) < 1 for e in st.embed_dims for r in st.mlp_ratios):
                raise SpaceError(f"{where}.mlp_ratios: a ratio gives no MLP unit at width {st.embed_dims[0]}; "
                                 "use larger ratios")
            bad = [w for w in st.wss if w > side]
            if bad:
                raise SpaceError(f"{where}.wss: window {bad[0]} is larger than the stage's {side}x{side} token "
                                 f"grid; use windows up to {side} (1: global sub-sampled attention only)")
            bad = [r for r in st.sr_ratios if side % r]
            if bad:
                raise SpaceError(f"{where}.sr_ratios: {bad[0]} does not divide the stage's {side}x{side} token "
                                 f"grid; use divisors of {side}")

    # ---------------------------------------------------------------- layout
    def removable(self, s: int) -> tuple[int, ...]:
        """The positions of stage s whose block may be an identity: the configured ones, or with
        identity shifting as many positions at the stage's end (where canonical forms put them)."""
        st = self.stages[s]
        if self.identity_shifting:
            return tuple(range(st.blocks - len(st.removable), st.blocks))
        return st.removable

    def contains(self, arch: Arch) -> bool:
        if (arch.family != self.family or arch.patch != self.patch or arch.stem
                or len(arch.stages) != len(self.stages)):
            return False
        for s, (stage, st) in enumerate(zip(arch.stages, self.stages)):
            if (stage.embed not in st.embed_dims or stage.ws not in st.wss or stage.sr not in st.sr_ratios
                    or len(stage.layers) != st.blocks):
                return False
            skipped = [i for i, l in enumerate(stage.layers) if l.identity]
            if len(skipped) > len(st.removable) or not (self.identity_shifting or set(skipped) <= set(st.removable)):
                return False
            if any(l.heads not in st.heads or l.qkv != stage.embed or st.ratio(stage.embed, l.mlp) is None
                   for l in stage.layers):
                return False
        return True

    @staticmethod
    @lru_cache(maxsize=4096)  # layers are values; sampling makes thousands (budget-driven identity_prob)
    def _layer(embed: int, heads: int, ratio: float, identity: bool = False) -> Layer:
        return Layer(heads=heads, qkv=embed, mlp=StageChoices.mlp(embed, ratio), identity=identity)

    def _arch(self, stages) -> Arch:
        return self.canonical(Arch(patch=self.patch, stages=tuple(stages), family=self.family))

    # ---------------------------------------------------------------- genes
    # Per stage: the width, the window and the sub-sampling ratio, then per block its heads, its MLP
    # ratio and (at removable positions) its skip flag.
    def _gene_choices(self) -> list[tuple | None]:
        """Choices of every gene (None: a skip flag, which mutation flips)."""
        choices = []
        for s, st in enumerate(self.stages):
            choices += [st.embed_dims, st.wss, st.sr_ratios]
            for i in range(st.blocks):
                choices += [st.heads, st.mlp_ratios] + ([None] if i in self.removable(s) else [])
        return choices

    def _genes(self, arch: Arch) -> list:
        genes = []
        for s, (stage, st) in enumerate(zip(self.canonical(arch).stages, self.stages)):
            genes += [stage.embed, stage.ws, stage.sr]
            for i, l in enumerate(stage.layers):
                genes += [l.heads, st.ratio(stage.embed, l.mlp)] + ([l.identity] if i in self.removable(s) else [])
        return genes

    def _from_genes(self, genes: list) -> Arch:
        it, stages = iter(genes), []
        for s, st in enumerate(self.stages):
            embed, ws, sr = next(it), next(it), next(it)
            layers = []
            for i in range(st.blocks):
                heads, ratio = next(it), next(it)
                layers.append(self._layer(embed, heads, ratio, next(it) if i in self.removable(s) else False))
            stages.append(Stage(embed, tuple(layers), ws=ws, sr=sr))
        return self._arch(stages)

    # ---------------------------------------------------------------- sampling and evolution
    def sample(self, rng: random.Random, identity_prob: float = 0.5, max_depth: int | None = None) -> Arch:
        """A random sub-network: per stage a width, window and sub-sampling ratio, per block heads
        and an MLP ratio, uniform over their choices. The skips depend on `sampling`:

        - "layerwise" (ViTAS): each removable block is skipped with `identity_prob`,
          independently; `max_depth` is not used;
        - "depth": a depth uniform in [min_depth, max_depth] (default: every block), kept at that
          many removable positions drawn uniformly.

        With identity shifting the result is canonical (identities at each stage's end)."""
        skipped = self._skipped(rng, [(s, i) for s in range(len(self.stages)) for i in self.removable(s)],
                                identity_prob, max_depth)
        stages = []
        for s, st in enumerate(self.stages):
            embed, ws, sr = rng.choice(st.embed_dims), rng.choice(st.wss), rng.choice(st.sr_ratios)
            layers = tuple(self._layer(embed, rng.choice(st.heads), rng.choice(st.mlp_ratios), (s, i) in skipped)
                           for i in range(st.blocks))
            stages.append(Stage(embed, layers, ws=ws, sr=sr))
        return self._arch(stages)

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        """Each gene with probability `prob`: a choice resampled uniformly, a skip flag flipped."""
        genes = []
        for g, c in zip(self._genes(arch), self._gene_choices()):
            if rng.random() < prob:
                g = (not g) if c is None else rng.choice(c)
            genes.append(g)
        return self._from_genes(genes)

    # ---------------------------------------------------------------- counting
    def macs(self, arch: Arch, convention: str = "timm") -> int:
        self.check_convention(convention)
        return macs(arch, self.img_size, self.in_chans, self.num_classes, convention)

    def params(self, arch: Arch) -> int:
        return params(arch, self.img_size, self.in_chans, self.num_classes)

    def _extreme(self, end: int, kept: tuple[int, ...]) -> Arch:
        """Every width and MLP ratio at its smallest (end 0) or largest (end -1), the first kept[s]
        removable blocks of stage s kept, and per stage the window and sub-sampling ratio that give
        the fewest (most) MACs: stages add up, so choosing them stage by stage is exact."""
        stages = []
        for s, (st, k) in enumerate(zip(self.stages, kept)):
            skip = set(self.removable(s)[k:])
            layers = tuple(self._layer(st.embed_dims[end], st.heads[end], st.mlp_ratios[end], i in skip)
                           for i in range(st.blocks))
            stages.append(Stage(st.embed_dims[end], layers, ws=st.wss[0], sr=st.sr_ratios[0]))
        pick = min if end == 0 else max
        for s, st in enumerate(self.stages):
            options = [stages[:s] + [Stage(stages[s].embed, stages[s].layers, ws=w, sr=r)] + stages[s + 1:]
                       for w, r in itertools.product(st.wss, st.sr_ratios)]
            stages = pick(options, key=lambda o: self.macs(Arch(patch=self.patch, stages=tuple(o), family=self.family)))
        return self._arch(stages)

    def usable_layers(self, lo: float, hi: float) -> list[int]:
        """The layers (indices into `layer_slots`) a network in [lo, hi] can use: every fixed
        block; with identity shifting the first (fixed + kept) positions of a stage for the most
        blocks it can keep, without it every removable position if it can keep one."""
        fits = [kept for kept, fewest, most in self._kept_ranges() if fewest <= hi and most >= lo]
        if not fits:
            return []
        usable, base = [], 0
        for s, st in enumerate(self.stages):
            most = max(kept[s] for kept in fits)
            removable = set(self.removable(s))
            if self.identity_shifting:
                usable += [base + i for i in range(st.blocks - len(st.removable) + most)]
            else:
                usable += [base + i for i in range(st.blocks) if i not in removable or most]
            base += st.blocks
        return usable

    def choices(self) -> dict[str, tuple]:
        """Per stage its width, window and sub-sampling ratio (embed0, ws0, sr0, ...); heads and
        MLP ratios per layer, over all stages."""
        dims = {}
        for s, st in enumerate(self.stages):
            dims |= {f"embed{s}": st.embed_dims, f"ws{s}": st.wss, f"sr{s}": st.sr_ratios}
        return dims | {"heads": tuple(sorted({h for st in self.stages for h in st.heads})),
                       "mlp_ratio": tuple(sorted({r for st in self.stages for r in st.mlp_ratios}))}

    def arch_choices(self, arch: Arch):
        """(dimension, value, per-layer?) of every choice `arch` makes."""
        for s, stage in enumerate(arch.stages):
            yield from ((f"embed{s}", stage.embed, False), (f"ws{s}", stage.ws, False), (f"sr{s}", stage.sr, False))
        for stage, st in zip(arch.stages, self.stages):
            for layer in stage.blocks:
                yield from (("heads", layer.heads, True), ("mlp_ratio", st.ratio(stage.embed, layer.mlp), True))

    # ---------------------------------------------------------------- latency (vitnas.latency_table)
    def _skeleton(self, embeds: tuple[int, ...]) -> LatencyBlock:
        """Everything but the blocks, timed as the real TwinsNet with every block passing its tokens
        through: the patch mergings, the position convs (one per stage, after its first computing
        block, which every network has: a stage keeps at least one), the final norm, the mean, the
        head and the call's own overhead. It depends on the stages' widths only."""
        build = functools.partial(families.latency_part, self.family, "skeleton", self, embeds)
        return LatencyBlock(("skeleton", self.patch) + tuple(embeds), build, (self.in_chans, self.img_size, self.img_size))

    def latency_blocks(self, arch: Arch) -> list[LatencyBlock]:
        """The network without its blocks' work, then one timm Twins Block per computing layer, on
        its stage's grid, LSA or GSA by its index among the stage's computing blocks (as built)."""
        sides = token_sides(arch.patch, self.img_size, len(arch.stages))
        return [self._skeleton(tuple(st.embed for st in arch.stages))] + [
            block_part(sides[s], st.embed, l.heads, l.mlp, is_local(st.ws, j), st.ws or 1, st.sr or 1)
            for s, st in enumerate(arch.stages) for j, l in enumerate(st.blocks)]

    def all_latency_blocks(self) -> list[LatencyBlock]:
        """Every skeleton (a width per stage) and every block shape of every stage: width x heads x
        MLP ratio x attention (LSA per window > 1; GSA per ratio, where a block can be one: window 1,
        or the odd blocks of a stage of more than one)."""
        sides = token_sides(self.patch, self.img_size, len(self.stages))
        out = [self._skeleton(embeds) for embeds in itertools.product(*(st.embed_dims for st in self.stages))]
        for side, st in zip(sides, self.stages):
            kinds = [(True, w, 1) for w in st.wss if w > 1]
            if 1 in st.wss or st.blocks > 1:
                kinds += [(False, 1, r) for r in st.sr_ratios]
            out += [block_part(side, e, h, st.mlp(e, r), local, ws, sr)
                    for e, h, r, (local, ws, sr) in itertools.product(st.embed_dims, st.heads, st.mlp_ratios, kinds)]
        return out


def block_part(side: int, embed: int, heads: int, mlp: int, local: bool, ws: int, sr: int) -> LatencyBlock:
    """A timm Twins Block on a side x side grid: LSA with window `ws`, or GSA with ratio `sr` (what
    the other one is does not change the block, so it is not keyed)."""
    attn = ("lsa", ws) if local else ("gsa", sr)
    return LatencyBlock(("block", side, embed, heads, mlp) + attn,
                        functools.partial(families.latency_part, "twins", "block", side, embed, heads, mlp, local, ws, sr),
                        (side * side, embed), chain=True)
