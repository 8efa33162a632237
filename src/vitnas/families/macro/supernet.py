"""The macro family's single-path supernet (SPOS, as NAS-Bench-Macro's search methods train it):
per layer one weight set per choice, an architecture runs its layers' chosen ops. A sub-network's
weights are those modules themselves, so `export` copies them into the stand-alone model's same
modules and export equivalence holds by construction."""
from __future__ import annotations

import torch
import torch.nn as nn

from ...arch import Arch
from ...supernet.base import Supernet
from ...supernet.multi import forward_each
from .layers import conv_head, make_layer, stem
from .model import MacroNet
from .space import BLOCKS, MacroSpace, layer_shapes


class MacroSupernet(Supernet):
    def __init__(self, space: MacroSpace, drop_path: float = 0.0):
        super().__init__()
        self.space = space
        full = space.largest()
        self.stem = stem(space.in_chans, full.stem)
        slots = list(layer_shapes(full))
        self.layers = nn.ModuleList()
        for i, (_, _, inp, oup, _, stride) in enumerate(slots):
            rate = drop_path * i / max(len(slots) - 1, 1)
            ops = ("proj", *BLOCKS) if stride == 2 else tuple(BLOCKS)  # "id" at stride 1 has no weights
            self.layers.append(nn.ModuleDict({op: make_layer(op, inp, oup, stride, rate) for op in ops}))
        self.conv_head = conv_head(full.stages[-1].embed)
        self.head = nn.Linear(self.conv_head[0].out_channels, space.num_classes)

    def chosen(self, arch: Arch) -> list[tuple[int, str, nn.Module]]:
        """(stage, op, module) of every computing layer of `arch`, in order."""
        return [(s, l.op, choices[l.op]) for choices, (s, l, *_) in zip(self.layers, layer_shapes(arch))
                if not l.identity]

    def forward(self, x: torch.Tensor, arch) -> torch.Tensor:
        if isinstance(arch, (list, tuple)):
            return forward_each(self, x, arch)
        x = self.stem(x)
        for _, _, layer in self.chosen(arch):
            x = layer(x)
        return self.head(self.conv_head(x).mean((2, 3)))

    def sub_state_dict(self, arch: Arch, path: int = 0) -> dict[str, torch.Tensor]:
        """`arch`'s weights under MacroNet's keys (`blocks.<stage>.<j>` for its j-th computing
        layer of the stage)."""
        state = self.stem.state_dict(prefix="stem.", keep_vars=True)
        state |= self.conv_head.state_dict(prefix="conv_head.", keep_vars=True)
        state |= self.head.state_dict(prefix="head.", keep_vars=True)
        seen = [0] * len(arch.stages)
        for s, _, layer in self.chosen(arch):
            state |= layer.state_dict(prefix=f"blocks.{s}.{seen[s]}.", keep_vars=True)
            seen[s] += 1
        return state


@torch.no_grad()
def export(net: MacroSupernet, arch: Arch, path: int = 0) -> MacroNet:
    """The stand-alone model of `arch` with `net`'s weights, in `net`'s floating point type, in eval
    mode (BatchNorm with its running statistics)."""
    sp = net.space
    if not sp.contains(arch):
        raise ValueError(f"not a network of the macro space: {arch}")
    model = MacroNet(arch, sp.img_size, sp.in_chans, sp.num_classes).to(dtype=net.head.weight.dtype)
    model.load_state_dict({k: v.detach().clone() for k, v in net.sub_state_dict(arch, path).items()})
    return model.eval()

