"""Which of the supernet's C token channels a sub-network of width c uses.

- prefix (AutoFormer): channels [0, c). Channel 0 serves every candidate width, the last ones only
  the largest.
- cyclic (ViTAS v2): the candidate widths c1 < ... < cn are laid end to end around a ring of C
  channels, so each width is a cyclic window and every channel serves the same number of candidate
  widths, give or take one.

A selector is either a `slice` (a view, no copy) or a LongTensor of channel indices.
"""
from __future__ import annotations

import torch

POLICIES = ("prefix", "cyclic")


def channel_windows(widths: tuple[int, ...], total: int, policy: str) -> dict[int, list[int]]:
    """The channels of each candidate width, as lists of indices (for tests and histograms)."""
    windows, offset = {}, 0
    for c in sorted(widths):
        start = 0 if policy == "prefix" else offset
        windows[c] = [(start + i) % total for i in range(c)]
        offset = (offset + c) % total
    return windows


def channel_selector(widths: tuple[int, ...], total: int, policy: str) -> dict[int, slice | torch.Tensor]:
    """Per candidate width, the cheapest selector of its channels."""
    if policy not in POLICIES:
        raise ValueError(f"supernet.sharing: unknown policy {policy!r}; allowed: {', '.join(POLICIES)}")
    selectors = {}
    for c, idx in channel_windows(widths, total, policy).items():
        if idx == list(range(idx[0], idx[0] + c)):  # contiguous: a view is enough
            selectors[c] = slice(idx[0], idx[0] + c)
        else:
            selectors[c] = torch.tensor(idx, dtype=torch.long)
    return selectors
