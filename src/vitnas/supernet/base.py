"""What every family's supernet is: an `nn.Module` over its space, with the training hooks of the
family contract (`vitnas.families.contract`) defaulting to nothing."""
from __future__ import annotations

import torch
import torch.nn as nn


class Supernet(nn.Module):
    """A weight-sharing supernet. A family's supernet sets `space` and provides
    `forward(x, arch)` (logits of one architecture), `forward(x, archs)` (one equal sub-batch per
    architecture, `vitnas.supernet.multi.split_batch`, logits in batch order) and
    `sub_state_dict(arch, path=0)` (the architecture's weights under its stand-alone model's
    state-dict keys); it overrides the hooks below only where it has the feature."""

    space: object
    patch_grid: int | None = None
    """With a patch head (supernet.patch_mixup): the side of the token grid it predicts labels for,
    and `forward` returns (logits, patch logits) in training mode; None: no patch head."""

    def on_epoch_start(self, epoch: int, optimizer: torch.optim.Optimizer | None, warmup_epochs: float) -> None:
        """Called before training epoch `epoch`'s first step (`supernet.warmup_epochs`: the length
        of progressive unlocking); by default nothing happens."""
