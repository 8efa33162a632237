"""ViT-ResNAS's multi-stage space (Liao et al., "Searching for Efficient Multi-Stage Vision
Transformers"): a conv stem and patch projection, then stages of transformer blocks joined by
(residual) spatial reduction. Per stage a token width; per block a head count (of the stage's fixed
head dimension) and an MLP width; blocks at the stage's `removable` positions may be skipped, each
independently. Torch-free.

Identity layers sit at fixed positions: the released supernet keeps one set of weights per
position, so skipping position 1 and skipping position 3 are different networks with different
inherited weights (no identity shifting in this family).

MACs: "timm" (what `torch.utils.flop_counter` measures / 2 on the exported model) and "resnas"
(the released `ComputationEstimator`) are the same count: stem convolutions, patch projection, QKV,
QK^T, A.V, projection, MLP, the spatial reduction's 3x3 stride-2 conv and class-token linear, and
the classifier; N includes the class token; norms, softmax, GELU, pooling and biases are not
counted. The released code assumes even token grids; at odd ones a reduction gives ceil(side / 2).
"""
from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass, replace

from ...arch import Arch, Layer, Stage
from ...spaces import LatencyBlock, SpaceError, StagedSpace, data_info

CONVENTIONS = ("timm", "resnas")
# The released skip choice of a removable block, ascending in what it keeps (skip, then keep):
# sr_tiny_mh.py's `layer` list [e, e, 0, 0], so a fully unlocked block is skipped with 1/2 and,
# unlocked like a width (keep the largest first), with 0, 0, 1/3 and 1/2 over the warm-up.
RELEASED_SKIPS = (True, True, False, False)
MULTI_ARCH_DRAWS = ("independent", "balanced")
# Shrink steps of the released initial population that touch heads and MLP only, before widths and
# depth shrink too (gen_utils.py reduce_constraint's _simplify_all_threshold).
SHRINK_HEADS_MLP_FIRST = 100


def token_grids(arch: Arch, img_size: int) -> list[int]:
    """Side of the patch-token grid of every stage, as the model computes it: the stem halves the
    image (3x3, stride 2, padding 1: ceil), the projection divides by its stride (floor), each
    spatial reduction halves it again (3x3, stride 2, padding 1: ceil)."""
    if arch.stem:
        side = (img_size + 1) // 2 // (arch.patch // 2)
    else:
        side = img_size // arch.patch
    grids = [side]
    for _ in arch.stages[1:]:
        grids.append((grids[-1] + 1) // 2)
    return grids


def macs(arch: Arch, img_size: int, in_chans: int, num_classes: int, convention: str = "timm") -> int:
    """MACs of `arch` on img_size x img_size inputs. Both conventions give the same count (see the
    module docstring); the spatial reduction's residual (pooling, zero-padding) costs none."""
    if convention not in CONVENTIONS:
        raise SpaceError(f"convention {convention!r} is not known for the resnas family; choose one of "
                         f"{', '.join(CONVENTIONS)}")
    grids = token_grids(arch, img_size)
    total = 0
    if arch.stem:
        side, s = (img_size + 1) // 2, arch.stem  # counted at the stem's output resolution
        total += side * side * 9 * (in_chans * s + 2 * s * s)  # conv1, then conv2 and conv3
        k, c = arch.patch // 2, s
    else:
        k, c = arch.patch, in_chans
    total += grids[0] ** 2 * arch.stages[0].embed * c * k * k  # patch projection
    for i, stage in enumerate(arch.stages):
        e, n = stage.embed, grids[i] ** 2 + 1  # patches + class token
        if i:
            c_in = arch.stages[i - 1].embed
            total += grids[i] ** 2 * e * 9 * c_in  # reduction conv, at the output grid
            total += c_in * e                      # class-token linear
        for l in stage.blocks:
            total += n * e * 3 * l.qkv       # QKV projection
            total += 2 * n * n * l.qkv       # QK^T and A.V over all heads
            total += n * l.qkv * e           # output projection
            total += 2 * n * e * l.mlp       # MLP
    return total + arch.stages[-1].embed * num_classes  # classifier on the class token


def params(arch: Arch, img_size: int, in_chans: int, num_classes: int) -> int:
    """Parameters of the stand-alone model (BatchNorm running statistics are buffers, not counted;
    no token-label patch head, which the released code trains but does not use to classify)."""
    grids = token_grids(arch, img_size)
    e0, total = arch.stages[0].embed, 0
    if arch.stem:
        s = arch.stem
        total += in_chans * s * 9 + 2 * s + 2 * (s * s * 9 + 2 * s)  # three convs + BN affine
        total += s * e0 * (arch.patch // 2) ** 2 + e0
    else:
        total += in_chans * e0 * arch.patch ** 2 + e0
    total += e0 + (grids[0] ** 2 + 1) * e0  # class token, position embedding
    for i, stage in enumerate(arch.stages):
        e = stage.embed
        if i:
            c_in = arch.stages[i - 1].embed
            total += 2 * c_in + (9 * c_in * e + e) + (c_in * e + e) + grids[i] ** 2 * e  # LN, conv, linear, pos
        for l in stage.blocks:
            total += 4 * e                               # two LayerNorms
            total += e * 3 * l.qkv + 3 * l.qkv           # QKV
            total += l.qkv * e + e                       # projection
            total += e * l.mlp + l.mlp + l.mlp * e + e   # MLP
    e = arch.stages[-1].embed
    return total + 2 * e + e * num_classes + num_classes  # final norm, head


@dataclass(frozen=True)
class StageChoices:
    """One stage of the space: its choices (ascending) and its layout."""

    embed_dims: tuple[int, ...]
    heads: tuple[int, ...]
    head_dim: int
    mlp_dims: tuple[int, ...]
    blocks: int
    removable: tuple[int, ...] = ()


@dataclass(frozen=True)
class ResNASSpace(StagedSpace):
    """ViT-ResNAS's space: a fixed stem and patch size; per stage a token width, per block a head
    count and an MLP width, and a skip flag at the stage's removable positions."""

    patch: int
    stem_channels: int
    residual: bool
    stages: tuple[StageChoices, ...]
    img_size: int
    in_chans: int
    num_classes: int
    identity_shifting: bool = False  # identities keep their positions (see the module docstring)
    sampling: str = "layerwise"  # per-block skip draws, or "depth": a uniform depth first
    # supernet.skip_unlock: each removable block's skip drawn from these (a prefix of
    # RELEASED_SKIPS while unlocking), not with identity_prob; None = with identity_prob.
    skip_choices: tuple[bool, ...] | None = None
    multi_arch_draw: str = "independent"  # supernet.multi_arch_draw: how a step's k networks are drawn
    family = "resnas"
    conventions = CONVENTIONS

    @classmethod
    def from_config(cls, cfg: dict) -> "ResNASSpace":
        space, data = cfg["space"], cfg["data"]
        info = data_info(data)
        stages = tuple(StageChoices(embed_dims=tuple(sorted(st["embed_dims"])), heads=tuple(sorted(st["heads"])),
                                    head_dim=st["head_dim"], mlp_dims=tuple(sorted(st["mlp_dims"])),
                                    blocks=st["blocks"], removable=tuple(sorted(st.get("removable", ()))))
                       for st in space["stages"])
        sp = cls(patch=space["patch"], stem_channels=space["stem_channels"], residual=space["residual"],
                 stages=stages, img_size=data.get("img_size") or info["img_size"], in_chans=info["in_chans"],
                 num_classes=info["num_classes"],
                 # supernet.identity_shifting is not read: positions are fixed in this family.
                 identity_shifting=False, sampling=cfg["supernet"]["sampling"],
                 skip_choices=RELEASED_SKIPS if cfg["supernet"]["skip_unlock"] else None,
                 multi_arch_draw=cfg["supernet"]["multi_arch_draw"])
        sp.check()
        return sp

    def check(self) -> None:
        if self.img_size % self.patch:
            raise SpaceError(f"space.patch: {self.patch} does not divide the image size {self.img_size}; "
                             f"use a divisor of {self.img_size}")
        if self.stem_channels and self.patch % 2:
            raise SpaceError(f"space.patch: {self.patch} is odd, but the conv stem (space.stem_channels = "
                             f"{self.stem_channels}) halves the image before the patch projection; use an "
                             "even patch or stem_channels: 0")
        if not self.stages:
            raise SpaceError("space.stages: at least one stage is needed")
        if self.skip_choices is not None and self.sampling != "layerwise":
            raise SpaceError("supernet.skip_unlock: the released skip schedule draws each removable block's "
                             "skip; it needs supernet.sampling: layerwise (or skip_unlock: false)")
        if self.multi_arch_draw not in MULTI_ARCH_DRAWS:
            raise SpaceError(f"supernet.multi_arch_draw: {self.multi_arch_draw!r} is not known; choose one of "
                             f"{', '.join(MULTI_ARCH_DRAWS)}")
        for s, st in enumerate(self.stages):
            bad = [p for p in st.removable if not 0 <= p < st.blocks]
            if bad:
                raise SpaceError(f"space.stages[{s}].removable: position {bad[0]} does not exist in a stage of "
                                 f"{st.blocks} blocks; use positions 0 to {st.blocks - 1}")
            if len(set(st.removable)) != len(st.removable):
                raise SpaceError(f"space.stages[{s}].removable: positions repeat; list each once")
            if s and self.residual and st.embed_dims[0] < self.stages[s - 1].embed_dims[-1]:
                raise SpaceError(f"space.stages[{s}].embed_dims: the residual spatial reduction zero-pads "
                                 f"the previous stage's tokens, so every width ({st.embed_dims[0]}) must be at "
                                 f"least the previous stage's widest ({self.stages[s - 1].embed_dims[-1]}); "
                                 "widen this stage or set space.residual: false")

    # ---------------------------------------------------------------- validity and canonical form
    def canonical(self, arch: Arch) -> Arch:
        return arch  # positions are fixed: every encoding is its own canonical form

    def key(self, arch: Arch) -> tuple:
        return arch.key(shifting=False)  # identity layers' choices ignored, positions kept

    def contains(self, arch: Arch) -> bool:
        if (arch.family != self.family or arch.patch != self.patch or arch.stem != self.stem_channels
                or len(arch.stages) != len(self.stages)):
            return False
        for stage, st in zip(arch.stages, self.stages):
            if stage.embed not in st.embed_dims or len(stage.layers) != st.blocks:
                return False
            for i, l in enumerate(stage.layers):
                if (l.heads not in st.heads or l.qkv != l.heads * st.head_dim or l.mlp not in st.mlp_dims
                        or (l.identity and i not in st.removable)):
                    return False
        return True

    def _layer(self, st: StageChoices, heads: int, mlp: int, identity: bool = False) -> Layer:
        return Layer(heads=heads, qkv=heads * st.head_dim, mlp=mlp, identity=identity)

    def _arch(self, stages) -> Arch:
        return Arch(patch=self.patch, stages=tuple(stages), family=self.family, stem=self.stem_channels)

    # ---------------------------------------------------------------- genes
    # Per stage: the width, then per block its heads, its MLP width and (at removable positions)
    # its skip flag, as the released evolution's genes (gen_utils.py mutate_func / crossover_func).
    def _gene_choices(self) -> list[tuple | None]:
        """Choices of every gene (None: a skip flag, which mutation flips)."""
        choices = []
        for st in self.stages:
            choices.append(st.embed_dims)
            for i in range(st.blocks):
                choices += [st.heads, st.mlp_dims] + ([None] if i in st.removable else [])
        return choices

    def _genes(self, arch: Arch) -> list:
        genes = []
        for stage, st in zip(arch.stages, self.stages):
            genes.append(stage.embed)
            for i, l in enumerate(stage.layers):
                genes += [l.heads, l.mlp] + ([l.identity] if i in st.removable else [])
        return genes

    def _from_genes(self, genes: list) -> Arch:
        it, stages = iter(genes), []
        for st in self.stages:
            embed = next(it)
            layers = []
            for i in range(st.blocks):
                heads, mlp = next(it), next(it)
                layers.append(self._layer(st, heads, mlp, next(it) if i in st.removable else False))
            stages.append(Stage(embed, tuple(layers)))
        return self._arch(stages)

    # ---------------------------------------------------------------- sampling and evolution
    def sample(self, rng: random.Random, identity_prob: float = 0.5, max_depth: int | None = None) -> Arch:
        """A random sub-network: per stage a width, per block heads and MLP width, uniform over
        their choices (the released code draws them per stage and per block). The skips depend on
        `sampling`:

        - "layerwise" (ViT-ResNAS): each removable block is skipped with `identity_prob`,
          independently; `max_depth` is not used;
        - "depth": a depth uniform in [min_depth, max_depth] (default: every block), kept at that
          many removable positions drawn uniformly.
        """
        skipped = self._skipped(rng, [(s, i) for s, st in enumerate(self.stages) for i in st.removable],
                                identity_prob, max_depth)
        stages = []
        for s, st in enumerate(self.stages):
            embed = rng.choice(st.embed_dims)
            layers = tuple(self._layer(st, rng.choice(st.heads), rng.choice(st.mlp_dims), (s, i) in skipped)
                           for i in range(st.blocks))
            stages.append(Stage(embed, layers))
        return self._arch(stages)

    def _skipped(self, rng: random.Random, removable: list, identity_prob: float, max_depth: int | None) -> set:
        """With `skip_choices` (supernet.skip_unlock), each removable block's skip drawn from them;
        otherwise as every staged space (`identity_prob`, or depth sampling)."""
        if self.skip_choices is None:
            return super()._skipped(rng, removable, identity_prob, max_depth)
        return {pos for pos in removable if rng.choice(self.skip_choices)}

    def sample_many(self, rngs: list[random.Random], identity_prob: float = 0.5,
                    max_depth: int | None = None) -> list[Arch]:
        """The k = len(rngs) sub-networks of one training step. "independent": one `sample` per
        generator. "balanced" (released channel_drop.py:93-157): every dimension (a stage's
        width, a block's heads, MLP width and, with `skip_choices`, skip) of the k networks is
        dealt from its choices repeated ceil(k / n) times and shuffled, so k <= n networks never
        share a value; skips without `skip_choices` are drawn per network with `identity_prob`.
        The balanced deal uses `rngs[0]` only."""
        if self.multi_arch_draw == "independent":
            return super().sample_many(rngs, identity_prob, max_depth)
        rng, k = rngs[0], len(rngs)

        def deal(choices: tuple) -> list:
            pool = list(choices) * math.ceil(k / len(choices))
            rng.shuffle(pool)
            return pool[:k]

        removable = [(s, i) for s, st in enumerate(self.stages) for i in st.removable]
        if self.skip_choices is None:
            skipped = [self._skipped(rng, removable, identity_prob, max_depth) for _ in range(k)]
        else:
            dealt = {pos: deal(self.skip_choices) for pos in removable}
            skipped = [{pos for pos in removable if dealt[pos][j]} for j in range(k)]
        per_stage = []
        for s, st in enumerate(self.stages):
            embeds = deal(st.embed_dims)
            blocks = [(deal(st.heads), deal(st.mlp_dims)) for _ in range(st.blocks)]
            per_stage.append((embeds, blocks))
        return [self._arch(Stage(embeds[j], tuple(self._layer(st, heads[j], mlps[j], (s, i) in skipped[j])
                                                  for i, (heads, mlps) in enumerate(blocks)))
                           for s, (st, (embeds, blocks)) in enumerate(zip(self.stages, per_stage)))
                for j in range(k)]

    def sample_shrunk(self, rng: random.Random, lo: float, hi: float, tries: int = 100_000) -> Arch:
        """The released search's random network in [lo, hi] (gen_utils.py:179-252,
        gen_random_network_def): stage widths uniform and each removable block skipped with 1/2
        (RELEASED_SKIPS), every head count and MLP width at its maximum, redrawn until its MACs
        reach `lo`; then, while above `hi`, a uniformly chosen block's heads or MLP (1/2 each) step
        down to their next smaller choice, and after SHRINK_HEADS_MLP_FIRST such steps a uniformly
        chosen stage width or block shrinks (a block: heads, MLP or, if removable, a skip drawn
        from RELEASED_SKIPS); a network that ends below `lo` is drawn again. (The released
        update_depth, which skips a removable block after a skipped removable neighbour, never acts
        on the released spaces: their removable blocks are not adjacent; it is not reproduced.)"""
        blocks = [(s, i) for s, st in enumerate(self.stages) for i in range(st.blocks)]
        for _ in range(tries):
            while True:
                embeds = [rng.choice(st.embed_dims) for st in self.stages]
                layers = {(s, i): [st.heads[-1], st.mlp_dims[-1], i in st.removable and rng.choice(RELEASED_SKIPS)]
                          for s, st in enumerate(self.stages) for i in range(st.blocks)}
                if self.macs(self._assemble(embeds, layers)) >= lo:
                    break
            steps = 0
            while self.macs(arch := self._assemble(embeds, layers)) > hi:
                if steps < SHRINK_HEADS_MLP_FIRST:
                    s, i = rng.choice(blocks)
                    option = rng.randrange(2)
                else:
                    where = rng.randrange(len(self.stages) + len(blocks))
                    if where < len(self.stages):
                        embeds[where] = _next_smaller(self.stages[where].embed_dims, embeds[where])
                        steps += 1
                        continue
                    s, i = blocks[where - len(self.stages)]
                    option = rng.randrange(3 if i in self.stages[s].removable else 2)
                st, layer = self.stages[s], layers[s, i]
                if option == 2:
                    skip = rng.choice(RELEASED_SKIPS)  # drawn even for a skipped block, as released
                    layer[2] = layer[2] or skip
                else:
                    layer[option] = _next_smaller((st.heads, st.mlp_dims)[option], layer[option])
                steps += 1
            if lo <= self.macs(arch):
                return arch
        raise SpaceError(f"search.init: shrink found no network with MACs in [{lo:.4g}, {hi:.4g}] in {tries} "
                         "draws; widen the window (search.min_budget_fraction) or use search.init: sample")

    def _assemble(self, embeds: list[int], layers: dict) -> Arch:
        return self._arch(Stage(e, tuple(self._layer(st, *layers[s, i]) for i in range(st.blocks)))
                          for s, (st, e) in enumerate(zip(self.stages, embeds)))

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        """Each gene with probability `prob`: a width resampled uniformly, a skip flag flipped
        (genes of skipped blocks mutate too, as in the released search)."""
        genes = []
        for g, c in zip(self._genes(arch), self._gene_choices()):
            if rng.random() < prob:
                g = (not g) if c is None else rng.choice(c)
            genes.append(g)
        return self._from_genes(genes)

    def unlocked(self, epoch: float, warmup_epochs: float) -> "ResNASSpace":
        """Progressive unlocking (released channel_drop.py:131-141): at `epoch` < `warmup_epochs`
        only the largest min(1 + floor(epoch (K - 1) / warmup), K) of each stage's K width, head and
        MLP choices remain, and of the skip choices with supernet.skip_unlock (keep first: no skip
        before 2/3 of the warm-up, 1/3 until its end, then 1/2); from `warmup_epochs` on (or with
        0), the whole space."""
        if warmup_epochs <= 0 or epoch >= warmup_epochs:
            return self

        def top(choices: tuple[int, ...]) -> tuple[int, ...]:
            k = len(choices)
            return choices[-min(1 + math.floor(epoch * (k - 1) / warmup_epochs), k):]

        skips = top(self.skip_choices) if self.skip_choices is not None else None
        return replace(self, skip_choices=skips,
                       stages=tuple(replace(st, embed_dims=top(st.embed_dims), heads=top(st.heads),
                                            mlp_dims=top(st.mlp_dims)) for st in self.stages))

    # ---------------------------------------------------------------- counting
    def macs(self, arch: Arch, convention: str = "timm") -> int:
        self.check_convention(convention)
        return macs(arch, self.img_size, self.in_chans, self.num_classes, convention)

    def params(self, arch: Arch) -> int:
        return params(arch, self.img_size, self.in_chans, self.num_classes)

    def _extreme(self, end: int, kept: tuple[int, ...]) -> Arch:
        """Every choice at its smallest (end 0) or largest (end -1), the first kept[s] removable
        blocks of stage s kept, the others skipped."""
        stages = []
        for st, k in zip(self.stages, kept):
            skip = set(st.removable[k:])
            stages.append(Stage(st.embed_dims[end], tuple(self._layer(st, st.heads[end], st.mlp_dims[end], i in skip)
                                                          for i in range(st.blocks))))
        return self._arch(stages)

    def usable_layers(self, lo: float, hi: float) -> list[int]:
        """The layers (indices into `layer_slots`) a network in [lo, hi] can use: every fixed
        block, and a removable one if a network in the window can keep a block of its stage (all
        removable positions of a stage cost the same)."""
        fits = [kept for kept, fewest, most in self._kept_ranges() if fewest <= hi and most >= lo]
        if not fits:
            return []
        usable, base = [], 0
        for s, st in enumerate(self.stages):
            keeps = any(kept[s] for kept in fits)
            usable += [base + i for i in range(st.blocks) if i not in st.removable or keeps]
            base += st.blocks
        return usable

    def choices(self) -> dict[str, tuple]:
        """Per stage its width (embed0, embed1, ...); heads and MLP widths per layer, over all
        stages."""
        dims = {f"embed{s}": st.embed_dims for s, st in enumerate(self.stages)}
        return dims | {"heads": tuple(sorted({h for st in self.stages for h in st.heads})),
                       "mlp": tuple(sorted({m for st in self.stages for m in st.mlp_dims}))}

    def arch_choices(self, arch: Arch):
        """(dimension, value, per-layer?) of every choice `arch` makes."""
        for s, stage in enumerate(arch.stages):
            yield f"embed{s}", stage.embed, False
        for layer in arch.blocks:
            yield from (("heads", layer.heads, True), ("mlp", layer.mlp, True))

    # ---------------------------------------------------------------- latency (vitnas.latency_table)
    def _skeleton(self, embeds: tuple[int, ...]) -> LatencyBlock:
        """Everything but the blocks, timed as the real network with every block skipped: the conv
        stem, the patch projection, the spatial reductions between the stages' widths, the final
        norm, the head and the call's own overhead."""
        arch = self._arch(Stage(e, tuple(self._layer(st, st.heads[0], st.mlp_dims[0], True) for _ in range(st.blocks)))
                          for e, st in zip(embeds, self.stages))
        return LatencyBlock(("skeleton", self.patch, self.stem_channels, self.residual) + tuple(embeds),
                            functools.partial(_skeleton_module, self, arch), (self.in_chans, self.img_size, self.img_size))

    def latency_blocks(self, arch: Arch) -> list[LatencyBlock]:
        """The network without blocks, then one timm Block per computing layer, at its stage's tokens."""
        from ..vit.space import block_part

        grids = token_grids(arch, self.img_size)
        return [self._skeleton(tuple(st.embed for st in arch.stages))] + [
            block_part(grids[s] ** 2 + 1, st.embed, l.heads, l.qkv, l.mlp)
            for s, st in enumerate(arch.stages) for l in st.blocks]

    def all_latency_blocks(self) -> list[LatencyBlock]:
        """Every skeleton (a width per stage) and every block shape of every stage."""
        from ..vit.space import block_part

        grids = token_grids(self.smallest(), self.img_size)
        out = [self._skeleton(embeds) for embeds in itertools.product(*(st.embed_dims for st in self.stages))]
        return out + [block_part(grids[s] ** 2 + 1, e, h, h * st.head_dim, m) for s, st in enumerate(self.stages)
                      for e, h, m in itertools.product(st.embed_dims, st.heads, st.mlp_dims)]


def _next_smaller(choices: tuple[int, ...], value: int) -> int:
    """The largest of the ascending `choices` below `value`; `value` itself if none is (the
    released prune_random_one: the first smaller entry of the descending list)."""
    return max((c for c in choices if c < value), default=value)


def _skeleton_module(space: ResNASSpace, arch: Arch):
    from ... import families  # through the registry: the model imports this module

    return families.get(space.family).build_model(arch, space)
