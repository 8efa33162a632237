"""The stand-alone NAS-Bench-Macro network of one architecture (the released train/model.py's
`Network`, with timm's forward interface): stem, the computing layers grouped per stage
(`blocks.<stage>.<j>`; identities are left out), the 1x1 conv head, pooling and the classifier
`head`."""
from __future__ import annotations

import torch
import torch.nn as nn

from ...arch import Arch
from .layers import conv_head, make_layer, stem
from .space import layer_shapes


def latency_part(kind: str, *args) -> nn.Module:
    """The module of one latency part (`MacroSpace.latency_blocks` names it): "layer" (op, inp, oup,
    stride), one layer; "stem" (space), the stem; "head" (space), MacroNet's own forward from the
    last layer's output on (the 1x1 conv head, pooling, the classifier)."""
    if kind == "layer":
        return make_layer(*args)
    (space,) = args
    net = MacroNet(space.smallest(), space.img_size, space.in_chans, space.num_classes)
    if kind == "stem":
        return net.stem
    net.stem, net.blocks = nn.Identity(), nn.Sequential()
    return net


class MacroNet(nn.Module):
    def __init__(self, arch: Arch, img_size: int, in_chans: int, num_classes: int, drop_path: float = 0.0):
        super().__init__()
        self.arch, self.in_chans, self.num_classes = arch, in_chans, num_classes
        self.stem = stem(in_chans, arch.stem)
        computing = [(s, l, inp, oup, stride) for s, l, inp, oup, _, stride in layer_shapes(arch) if not l.identity]
        rates = [drop_path * j / max(len(computing) - 1, 1) for j in range(len(computing))]  # timm: linear in depth
        stages = [nn.Sequential() for _ in arch.stages]
        for (s, l, inp, oup, stride), rate in zip(computing, rates):
            stages[s].append(make_layer(l.op, inp, oup, stride, rate))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = conv_head(arch.stages[-1].embed)
        self.head = nn.Linear(self.conv_head[0].out_channels, num_classes)
        self.feature_info = [{"num_chs": st.embed, "reduction": 2 ** (s + 1), "module": f"blocks.{s}"}
                             for s, st in enumerate(arch.stages)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices=None, norm: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False):
        """Every stage's output map at `indices` (an int n: the last n; default: the last), with
        the final features unless `intermediates_only`."""
        n = len(self.blocks)
        take = {n - 1} if indices is None else (set(range(n - indices, n)) if isinstance(indices, int)
                                                 else {i % n for i in indices})
        x, maps = self.stem(x), []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in take:
                maps.append(x)
        return maps if intermediates_only else (self.conv_head(x), maps)
