"""The toy family's stand-alone network and its single-path supernet (one weight set per hidden
width per layer): a sub-network's weights are its layers' chosen blocks, so `export` copies them
into the same modules and export equivalence holds by construction."""
from __future__ import annotations

import torch
import torch.nn as nn

from vitnas.arch import Arch
from vitnas.supernet.base import Supernet
from vitnas.supernet.multi import forward_each

from .space import STRIDE, ToySpace


def stem(in_chans: int, c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chans, c, 3, STRIDE, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())


class InvertedResidual(nn.Module):
    """MobileNetV2's block at stride 1: 1x1 expand to `hidden`, 3x3 depthwise, 1x1 project, plus x."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ToyNet(nn.Module):
    def __init__(self, arch: Arch, img_size: int, in_chans: int, num_classes: int):
        super().__init__()
        self.arch, self.in_chans, c = arch, in_chans, arch.stages[0].embed
        self.stem = stem(in_chans, c)
        self.blocks = nn.Sequential(*(InvertedResidual(c, l.mlp) for l in arch.blocks))
        self.head = nn.Linear(c, num_classes)

    @property
    def feature_info(self) -> list[dict]:
        return [{"num_chs": self.arch.stages[0].embed, "reduction": STRIDE, "module": f"blocks.{i}"}
                for i in range(len(self.blocks))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean((2, 3)))

    def forward_intermediates(self, x, indices=None, norm=False, output_fmt="NCHW", intermediates_only=False):
        n = len(self.blocks)
        take = [n - 1] if indices is None else (list(range(n - indices, n)) if isinstance(indices, int)
                                                 else [i % n for i in indices])
        x, maps = self.stem(x), []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in take:
                maps.append(x)
        return maps if intermediates_only else (x, maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class ToySupernet(Supernet):
    def __init__(self, space: ToySpace):
        super().__init__()
        self.space, c = space, space.channels
        self.stem = stem(space.in_chans, c)
        self.layers = nn.ModuleList(nn.ModuleDict({str(h): InvertedResidual(c, h) for h in space.widths})
                                    for _ in range(space.layers))
        self.head = nn.Linear(c, space.num_classes)

    def chosen(self, arch: Arch) -> list[InvertedResidual]:
        return [choices[str(l.mlp)] for choices, l in zip(self.layers, arch.layers) if not l.identity]

    def forward(self, x: torch.Tensor, arch) -> torch.Tensor:
        if isinstance(arch, (list, tuple)):
            return forward_each(self, x, arch)
        x = self.stem(x)
        for block in self.chosen(arch):
            x = block(x)
        return self.head(x.mean((2, 3)))

    def sub_state_dict(self, arch: Arch, path: int = 0) -> dict[str, torch.Tensor]:
        state = self.stem.state_dict(prefix="stem.", keep_vars=True)
        state |= self.head.state_dict(prefix="head.", keep_vars=True)
        for j, block in enumerate(self.chosen(arch)):
            state |= block.state_dict(prefix=f"blocks.{j}.", keep_vars=True)
        return state


@torch.no_grad()
def export(net: ToySupernet, arch: Arch, path: int = 0) -> ToyNet:
    sp = net.space
    model = ToyNet(arch, sp.img_size, sp.in_chans, sp.num_classes).to(dtype=net.head.weight.dtype)
    model.load_state_dict({k: v.detach().clone() for k, v in net.sub_state_dict(arch, path).items()})
    return model.eval()
