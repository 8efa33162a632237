"""The macro family's layers, as the released train/model.py builds them (same module layout, so
state-dict keys read alike): the stem, MobileNetV2's inverted residual, the 1x1 stride-2
projection that stands for "id" where the stride and width change, and the 1x1 conv head. Shared
by the stand-alone model and the supernet, so an exported layer is the supernet's layer."""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import DropPath

from .space import BLOCKS, HEAD


def conv_bn(inp: int, oup: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> list[nn.Module]:
    """A bias-free k x k conv (padding k // 2), BatchNorm and, with `act`, ReLU."""
    conv = nn.Conv2d(inp, oup, k, stride, k // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(oup)] + ([nn.ReLU(inplace=True)] if act else [])


def stem(in_chans: int, c: int) -> nn.Sequential:
    return nn.Sequential(*conv_bn(in_chans, c, 3))


def conv_head(c: int) -> nn.Sequential:
    """The 1x1 conv to HEAD channels before pooling (the release's `out`, less its pooling)."""
    return nn.Sequential(*conv_bn(c, HEAD))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, k x k depthwise (stride), 1x1 project; a shortcut where
    stride and width stay (the released block, with an optional drop path on the residual)."""

    def __init__(self, inp: int, oup: int, stride: int, op: str, drop_path: float = 0.0):
        super().__init__()
        k, t = BLOCKS[op]
        h = inp * t
        self.conv = nn.Sequential(*conv_bn(inp, h), *conv_bn(h, h, k, stride, groups=h), *conv_bn(h, oup, act=False))
        self.use_shortcut = inp == oup and stride == 1
        self.drop_path = DropPath(drop_path) if drop_path and self.use_shortcut else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.conv(x)) if self.use_shortcut else self.conv(x)


class Projection(nn.Module):
    """The release's "id" at a stage's first layer: a 1x1 stride-2 conv to the new width, BN."""

    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        self.downsample = nn.Sequential(*conv_bn(inp, oup, stride=stride, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x)


def make_layer(op: str, inp: int, oup: int, stride: int, drop_path: float = 0.0) -> nn.Module:
    """The module of a computing layer's op ("proj" or a block)."""
    if op == "proj":
        return Projection(inp, oup, stride)
    return InvertedResidual(inp, oup, stride, op, drop_path)
