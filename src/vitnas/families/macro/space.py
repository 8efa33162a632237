"""NAS-Bench-Macro's space (Su et al., "Prioritized Architecture Sampling with Monte-Carlo Tree
Search", CVPR 2021; the released train/model.py of xiusu/NAS-Bench-Macro): a fixed CNN skeleton
with 8 searchable layers, each an identity or one of two MobileNetV2 blocks. Torch-free.

The skeleton: a 3x3 stride-1 conv stem to 32 channels (BN, ReLU); three stages of 2, 3 and 3
layers whose first layer halves the resolution and doubles the channels (64, 128, 256); a 1x1
conv to 1280 channels (BN, ReLU), global average pooling and a linear classifier. A layer's
choices, as the benchmark's key digits: 0 "id", 1 "ir_3x3_t3" (MobileNetV2 block, kernel 3,
expansion 3), 2 "ir_5x5_t6" (kernel 5, expansion 6). A stage's first layer cannot be an identity
(its stride and width change): there the release's "id" is a 1x1 stride-2 conv + BN, which this
family calls "proj" and counts as a computing layer.

In an `Arch`: one stage per benchmark stage (`embed` its channels), `stem` the stem's channels,
`patch` 1 (the stem's stride); a layer names its operation in `op` ("proj", "ir_3x3_t3",
"ir_5x5_t6"; identities: `identity=True`, op "id"), `mlp` its block's hidden width (0 for a
projection), `heads` and `qkv` 0 (no attention).

Identity shifting (`supernet.identity_shifting`, ViTAS v2): identities move to the end of their
stage. Only stride-1 layers can be identities and the stage's first layer always computes, so
`Arch.shifted` keeps each stage's downsampling layer first: encodings that differ only in where a
stage's identities sit are one network (the benchmark lists each of them, with equal counts).

MACs: "nasbench" (the benchmark's `flops`) and "timm" (what `torch.utils.flop_counter` measures
/ 2 on the stand-alone model) are the same count: multiply-accumulates of every convolution and
of the classifier's weights; BatchNorm, ReLU, pooling, the residual additions and biases are not
counted. Parameters: conv and classifier weights, BatchNorm's affine weights and biases, the
classifier's bias (BatchNorm's running statistics are buffers). Both reproduce every one of the
benchmark's 6,561 networks at 32 x 32 RGB and 10 classes (tests/test_macro_family.py). At other
sizes a stride-2 layer gives ceil(side / 2), as the padded convolutions do.
"""
from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass
from functools import lru_cache

from ...arch import Arch, Layer, Stage
from ... import families
from ...spaces import LatencyBlock, Space, SpaceError, data_info

CONVENTIONS = ("timm", "nasbench")
STEM = 32  # the stem's channels (init_channels)
STAGE_LAYERS = (2, 3, 3)
HEAD = 1280  # channels of the 1x1 conv before pooling
BENCH_OPS = ("id", "ir_3x3_t3", "ir_5x5_t6")  # the benchmark's candidate_OP, by key digit
BLOCKS = {"ir_3x3_t3": (3, 3), "ir_5x5_t6": (5, 6)}  # op -> (kernel, expansion)


def widths() -> list[int]:
    """Channels of every stage: the stem's, doubled at each stage."""
    return [STEM * 2 ** (s + 1) for s in range(len(STAGE_LAYERS))]


@lru_cache(maxsize=None)
def layer_counts(op: str, inp: int, oup: int, side: int, stride: int) -> tuple[int, int]:
    """(MACs, parameters) of one layer on a side x side input (see the module docstring)."""
    out = (side + 1) // 2 if stride == 2 else side
    if op == "id":
        return 0, 0
    if op == "proj":
        return out * out * inp * oup, inp * oup + 2 * oup
    k, t = BLOCKS[op]
    h = inp * t
    macs = side * side * inp * h + out * out * h * (k * k + oup)  # expand; depthwise, project
    return macs, inp * h + h * k * k + h * oup + 2 * (2 * h + oup)  # three convs, three BNs


def layer_shapes(arch: Arch, img_size: int = 32):
    """(stage, layer, input channels, output channels, input side, stride) of every layer, in
    order: a stage's first layer has stride 2."""
    side, c = img_size, arch.stem
    for s, stage in enumerate(arch.stages):
        for i, layer in enumerate(stage.layers):
            stride = 2 if i == 0 else 1
            yield s, layer, c, stage.embed, side, stride
            side, c = (side + 1) // 2 if stride == 2 else side, stage.embed


def _counts(arch: Arch, img_size: int, in_chans: int, num_classes: int) -> tuple[int, int]:
    side = img_size
    macs, params = side * side * arch.stem * in_chans * 9, arch.stem * in_chans * 9 + 2 * arch.stem
    for _, layer, inp, oup, side_in, stride in layer_shapes(arch, img_size):
        m, p = layer_counts(layer.op, inp, oup, side_in, stride)
        macs, params = macs + m, params + p
    for _ in arch.stages:
        side = (side + 1) // 2
    c = arch.stages[-1].embed
    macs += side * side * c * HEAD + HEAD * num_classes  # conv head, classifier
    return macs, params + c * HEAD + 2 * HEAD + HEAD * num_classes + num_classes


def macs(arch: Arch, img_size: int, in_chans: int, num_classes: int, convention: str = "timm") -> int:
    """MACs of `arch` on img_size x img_size inputs; "timm" and "nasbench" are one count."""
    if convention not in CONVENTIONS:
        raise SpaceError(f"convention {convention!r} is not known for the macro family; choose one of "
                         f"{', '.join(CONVENTIONS)}")
    return _counts(arch, img_size, in_chans, num_classes)[0]


def params(arch: Arch, img_size: int, in_chans: int, num_classes: int) -> int:
    return _counts(arch, img_size, in_chans, num_classes)[1]


def layer(op: str, inp: int, first: bool) -> Layer:
    """The `Layer` of a benchmark op ("id" at a stage's first layer is its projection)."""
    if op == "id":
        return Layer(0, 0, 0, op="proj") if first else Layer(0, 0, 0, identity=True, op="id")
    return Layer(0, 0, inp * BLOCKS[op][1], op=op)


def from_ops(ops) -> Arch:
    """The network of 8 benchmark ops (names of BENCH_OPS), in layer order."""
    ops, stages, c = list(ops), [], STEM
    if len(ops) != sum(STAGE_LAYERS) or not set(ops) <= set(BENCH_OPS):
        raise ValueError(f"not a NAS-Bench-Macro network: {ops}; expected {sum(STAGE_LAYERS)} of {BENCH_OPS}")
    for n, width in zip(STAGE_LAYERS, widths()):
        layers = tuple(layer(ops.pop(0), c if i == 0 else width, i == 0) for i in range(n))
        stages.append(Stage(width, layers))
        c = width
    return Arch(patch=1, stages=tuple(stages), family="macro", stem=STEM)


def from_key(key: str) -> Arch:
    """The network of a benchmark key ("02012100": one digit per layer)."""
    return from_ops(BENCH_OPS[int(d)] for d in key)


def ops(arch: Arch) -> list[str]:
    """The benchmark ops of `arch`'s layers ("proj" is the benchmark's "id")."""
    return ["id" if l.op == "proj" else l.op for s in arch.stages for l in s.layers]


def bench_key(arch: Arch) -> str:
    """The benchmark's key of `arch` (of its encoding: shift-equivalent encodings differ)."""
    return "".join(str(BENCH_OPS.index(op)) for op in ops(arch))


@lru_cache(maxsize=8)
def every_network(img_size: int, in_chans: int, num_classes: int) -> tuple[tuple[Arch, int], ...]:
    """(network, MACs) of all 3^8 encodings."""
    nets = (from_ops(o) for o in itertools.product(BENCH_OPS, repeat=sum(STAGE_LAYERS)))
    return tuple((a, macs(a, img_size, in_chans, num_classes)) for a in nets)


@dataclass(frozen=True)
class MacroSpace(Space):
    """NAS-Bench-Macro's space for the config's data (image size, channels, classes)."""

    img_size: int = 32
    in_chans: int = 3
    num_classes: int = 10
    identity_shifting: bool = True
    sampling: str = "layerwise"  # the only one: depth sampling is refused (see from_config)
    family = "macro"
    conventions = CONVENTIONS
    min_depth = len(STAGE_LAYERS)  # every stage's downsampling layer computes
    max_depth = sum(STAGE_LAYERS)

    @classmethod
    def from_config(cls, cfg: dict) -> "MacroSpace":
        data, sn = cfg["data"], cfg["supernet"]
        if sn["sampling"] != "layerwise":
            raise SpaceError(f"supernet.sampling: {sn['sampling']} does not apply to the macro family (each "
                             "layer draws identity or a block: layerwise); use sampling: layerwise, with "
                             "identity_prob 1/3 for uniform sampling over the benchmark's ops")
        info = data_info(data)
        return cls(img_size=data.get("img_size") or info["img_size"], in_chans=info["in_chans"],
                   num_classes=info["num_classes"], identity_shifting=sn["identity_shifting"])

    def contains(self, arch: Arch) -> bool:
        try:
            return arch == from_ops(ops(arch))
        except (ValueError, TypeError):
            return False

    # Genes: the benchmark op of every layer, in order.
    def _genes(self, arch: Arch) -> list[str]:
        return ops(arch)

    def _from_genes(self, genes: list[str]) -> Arch:
        return from_ops(genes)

    def sample(self, rng: random.Random, identity_prob: float = 0.5, max_depth: int | None = None) -> Arch:
        """Each layer "id" with `identity_prob`, else one of the two blocks uniformly (1/3: every
        benchmark network equally likely); `max_depth` is not used (layerwise sampling only). In
        canonical form, as the ViT families draw: with identity shifting the supernet trains a
        stage's first layers only, the ones every depth uses (ViTAS v2)."""
        blocks = BENCH_OPS[1:]
        return self.canonical(from_ops("id" if rng.random() < identity_prob else rng.choice(blocks)
                                       for _ in range(self.max_depth)))

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        """Each layer's op resampled uniformly over the three with probability `prob` (canonical)."""
        return self.canonical(from_ops(rng.choice(BENCH_OPS) if rng.random() < prob else op for op in ops(arch)))

    def macs(self, arch: Arch, convention: str = "timm") -> int:
        self.check_convention(convention)
        return macs(arch, self.img_size, self.in_chans, self.num_classes, convention)

    def params(self, arch: Arch) -> int:
        return params(arch, self.img_size, self.in_chans, self.num_classes)

    def smallest(self) -> Arch:
        return from_ops(["id"] * self.max_depth)

    def largest(self) -> Arch:
        return from_ops(["ir_5x5_t6"] * self.max_depth)

    def _in_window(self, lo: float, hi: float) -> list[Arch]:
        """The canonical networks with MACs in [lo, hi]."""
        nets = every_network(self.img_size, self.in_chans, self.num_classes)
        return [self.canonical(a) for a, m in nets if lo <= m <= hi]

    def deepest_in_window(self, lo: float, hi: float) -> int:
        return max((a.depth for a in self._in_window(lo, hi)), default=0)

    def layer_slots(self) -> list[str]:
        return [f"s{s}.l{i}" for s, n in enumerate(STAGE_LAYERS) for i in range(n)]

    def usable_layers(self, lo: float, hi: float) -> list[int]:
        """The slots that compute in some (canonical) network of the window."""
        used = set()
        for a in self._in_window(lo, hi):
            used |= {i for i, l in enumerate(l for s in a.stages for l in s.layers) if not l.identity}
        return sorted(used)

    def choices(self) -> dict[str, tuple]:
        return {"op": ("proj", *BLOCKS)}

    def arch_choices(self, arch: Arch):
        return (("op", l.op, True) for l in arch.blocks)

    # ---------------------------------------------------------------- latency (vitnas.latency_table)
    # No part of this network can be skipped whole (every stage's first layer computes), so the
    # skeleton is two parts of the real MacroNet: its stem on the image, and what follows the last
    # layer (the 1x1 conv head, pooling, the classifier, and the call's own overhead).
    def _ends(self) -> list[LatencyBlock]:
        side, c = self.img_size, widths()[-1]
        for _ in STAGE_LAYERS:
            side = (side + 1) // 2
        part = functools.partial(families.latency_part, self.family)
        return [LatencyBlock(("stem", self.in_chans, STEM), functools.partial(part, "stem", self),
                             (self.in_chans, self.img_size, self.img_size)),
                LatencyBlock(("head", c, side, HEAD, self.num_classes), functools.partial(part, "head", self),
                             (c, side, side))]

    def latency_blocks(self, arch: Arch) -> list[LatencyBlock]:
        """Stem and head, then the family's module of every computing layer at its input's shape."""
        return self._ends() + [layer_part(l.op, inp, oup, side, stride)
                               for _, l, inp, oup, side, stride in layer_shapes(arch, self.img_size) if not l.identity]

    def all_latency_blocks(self) -> list[LatencyBlock]:
        """Stem, head and every layer shape: a stage's first layer as projection or either block,
        the others as either block (17 parts)."""
        parts = {}
        for _, _, inp, oup, side, stride in layer_shapes(self.largest(), self.img_size):
            for op in (("proj", *BLOCKS) if stride == 2 else BLOCKS):
                part = layer_part(op, inp, oup, side, stride)
                parts.setdefault(part.key, part)
        return self._ends() + list(parts.values())


def layer_part(op: str, inp: int, oup: int, side: int, stride: int) -> LatencyBlock:
    """One layer (`layers.make_layer`) on an inp x side x side map; chained where its output has its
    input's shape (a stride-1 block, with its shortcut), alone where it downsamples."""
    build = functools.partial(families.latency_part, "macro", "layer", op, inp, oup, stride)
    return LatencyBlock(("layer", op, side, inp, oup, stride), build,
                        (inp, side, side), chain=stride == 1 and inp == oup)
