"""The toy CNN space: a 3x3 stride-2 stem to `channels`, then `layers` inverted-residual layers
(1x1 expand to a hidden width, 3x3 depthwise, 1x1 project, each with BatchNorm), global average
pooling and a linear head. Each layer but the first may be an identity. Torch-free."""
from __future__ import annotations

import random
from dataclasses import dataclass

from vitnas.arch import Arch, Layer, Stage
from vitnas.spaces import Space, data_info

STRIDE = 2  # the stem's


def side(img_size: int) -> int:
    return (img_size + 1) // 2  # 3x3, stride 2, padding 1


def macs(arch: Arch, img_size: int, in_chans: int, num_classes: int, convention: str = "timm") -> int:
    """Convolutions and the head, as torch.utils.flop_counter counts them / 2 (BatchNorm, ReLU,
    pooling and additions are not counted)."""
    n, c = side(img_size) ** 2, arch.stages[0].embed
    blocks = sum(n * (2 * c * l.mlp + 9 * l.mlp) for l in arch.blocks)
    return n * c * in_chans * 9 + blocks + c * num_classes


def params(arch: Arch, img_size: int, in_chans: int, num_classes: int) -> int:
    """Weights, BatchNorm affine parameters and the head (BatchNorm statistics are buffers)."""
    c = arch.stages[0].embed
    blocks = sum(2 * c * l.mlp + 9 * l.mlp + 4 * l.mlp + 2 * c for l in arch.blocks)
    return c * in_chans * 9 + 2 * c + blocks + c * num_classes + num_classes


@dataclass(frozen=True)
class ToySpace(Space):
    widths: tuple[int, ...]
    channels: int
    layers: int
    img_size: int
    in_chans: int
    num_classes: int
    identity_shifting: bool = False  # one weight set per position: positions are kept
    sampling: str = "layerwise"
    min_depth = 1
    family = "toy"

    @classmethod
    def from_config(cls, cfg: dict) -> "ToySpace":
        space, info = cfg["space"], data_info(cfg["data"])
        return cls(tuple(sorted(space["widths"])), space["channels"], space["layers"],
                   cfg["data"].get("img_size") or info["img_size"], info["in_chans"], info["num_classes"])

    @property
    def max_depth(self) -> int:
        return self.layers

    def _arch(self, layers) -> Arch:
        return Arch(patch=STRIDE, stages=(Stage(self.channels, tuple(layers)),), family=self.family)

    def uniform(self, hidden: int) -> Arch:
        """Every layer computing at `hidden`."""
        return self._arch(Layer(1, 0, hidden) for _ in range(self.layers))

    def contains(self, arch: Arch) -> bool:
        return (arch.family == self.family and arch.patch == STRIDE and len(arch.stages) == 1
                and arch.stages[0].embed == self.channels and len(arch.layers) == self.layers
                and not arch.layers[0].identity
                and all(l.mlp in self.widths and (l.heads, l.qkv) == (1, 0) for l in arch.layers))

    # Genes: per layer its hidden width, then (after the first) its identity flag.
    def _genes(self, arch: Arch) -> list:
        return [g for i, l in enumerate(arch.layers) for g in ((l.mlp,) if i == 0 else (l.mlp, l.identity))]

    def _from_genes(self, genes: list) -> Arch:
        genes = [genes[0], False] + list(genes[1:])
        return self._arch(Layer(1, 0, genes[2 * i], identity=genes[2 * i + 1]) for i in range(self.layers))

    def sample(self, rng: random.Random, identity_prob: float = 0.5, max_depth: int | None = None) -> Arch:
        return self._arch(Layer(1, 0, rng.choice(self.widths), identity=i > 0 and rng.random() < identity_prob)
                          for i in range(self.layers))

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        genes = self._genes(arch)
        for i, g in enumerate(genes):
            if rng.random() < prob:
                genes[i] = (not g) if isinstance(g, bool) else rng.choice(self.widths)
        return self._from_genes(genes)

    def macs(self, arch: Arch, convention: str = "timm") -> int:
        self.check_convention(convention)
        return macs(arch, self.img_size, self.in_chans, self.num_classes)

    def params(self, arch: Arch) -> int:
        return params(arch, self.img_size, self.in_chans, self.num_classes)

    def _at_depth(self, depth: int, hidden: int) -> Arch:
        return self._arch(Layer(1, 0, hidden, identity=i >= depth) for i in range(self.layers))

    def smallest(self) -> Arch:
        return self._at_depth(1, self.widths[0])

    def largest(self) -> Arch:
        return self._at_depth(self.layers, self.widths[-1])

    def deepest_in_window(self, lo: float, hi: float) -> int:
        fits = [d for d in range(1, self.layers + 1) if self.macs(self._at_depth(d, self.widths[0])) <= hi
                and self.macs(self._at_depth(d, self.widths[-1])) >= lo]
        return max(fits, default=0)

    def layer_slots(self) -> list[str]:
        return [f"l{i}" for i in range(self.layers)]

    def usable_layers(self, lo: float, hi: float) -> list[int]:
        deepest = self.deepest_in_window(lo, hi)  # positions cost alike, and only the first is fixed
        return list(range(self.layers if deepest > 1 else deepest))

    def choices(self) -> dict[str, tuple]:
        return {"hidden": self.widths}

    def arch_choices(self, arch: Arch):
        return (("hidden", l.mlp, True) for l in arch.blocks)
