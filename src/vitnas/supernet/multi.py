"""Multi-architectural sampling (ViT-ResNAS): one batch split into k equal sub-batches, each through
its own sub-network, in one forward pass, so one backward pass trains k sub-networks. Done by
slicing each sub-network's weights, not by full-width masks, so each sub-batch costs what its own
network costs."""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def split_batch(x: torch.Tensor, k: int, interleave: bool = False) -> tuple[torch.Tensor, ...]:
    """`x` as k equal sub-batches: contiguous, or interleaved (sub-batch j = examples j, j + k,
    j + 2k, ..., as the released ChannelDrop repeats its k masks over the batch,
    channel_drop.py forward_mask)."""
    if k < 1 or x.shape[0] % k:
        raise ValueError(f"a batch of {x.shape[0]} does not split into {k} equal sub-batches for "
                         f"{k} architectures; use a batch size divisible by supernet.archs_per_batch")
    return tuple(x[j::k] for j in range(k)) if interleave else x.chunk(k)


def merge_batch(parts: list[torch.Tensor], interleave: bool = False) -> torch.Tensor:
    """The outputs of `split_batch`'s sub-batches back in batch order."""
    if not interleave:
        return torch.cat(parts)
    return torch.stack(parts, dim=1).flatten(0, 1)


def forward_each(forward: Callable, x: torch.Tensor, archs: Sequence) -> torch.Tensor:
    """Outputs of `forward(sub_batch, arch)` for each arch on its sub-batch, in batch order."""
    return torch.cat([forward(part, arch) for part, arch in zip(split_batch(x, len(archs)), archs)])
