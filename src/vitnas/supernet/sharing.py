"""Which of the supernet's C token channels a sub-network of width c uses.

- prefix (AutoFormer): channels [0, c). Channel 0 serves every candidate width, the last ones only
  the largest.
- cyclic (ViTAS v2): the candidate widths c1 < ... < cn are laid end to end around a ring of C
  channels, so each width is a cyclic window and every channel serves the same number of candidate
  widths, give or take one.
- bilateral (BCNet, ViTAS v1): a width-c sub-network runs twice, on channels [0, c) and on
  [C - c, C), and the two logits are summed, so the last channels are trained and judged as often
  as the first ones (usage is mirror-symmetric).

Each width has one or more *paths*, each a channel window. A window's selector is either a `slice`
(a view, no copy) or a LongTensor of channel indices.
"""
from __future__ import annotations

import torch

POLICIES = ("prefix", "cyclic", "bilateral")


def channel_paths(widths: tuple[int, ...], total: int, policy: str) -> dict[int, list[list[int]]]:
    """Per candidate width, the channel windows its sub-networks run on (two for bilateral)."""
    if policy not in POLICIES:
        raise ValueError(f"supernet.sharing: unknown policy {policy!r}; allowed: {', '.join(POLICIES)}")
    paths, offset = {}, 0
    for c in sorted(widths):
        if policy == "bilateral":
            paths[c] = [list(range(c)), list(range(total - c, total))]
        else:
            start = 0 if policy == "prefix" else offset
            paths[c] = [[(start + i) % total for i in range(c)]]
        offset = (offset + c) % total
    return paths


def channel_windows(widths: tuple[int, ...], total: int, policy: str) -> dict[int, list[int]]:
    """The channels each candidate width uses, one entry per path (bilateral: the first window,
    then the last), as flat index lists for tests and usage histograms."""
    return {c: [i for window in windows for i in window]
            for c, windows in channel_paths(widths, total, policy).items()}


def channel_selector(widths: tuple[int, ...], total: int,
                     policy: str) -> dict[int, tuple[slice | torch.Tensor, ...]]:
    """Per candidate width, the cheapest selector of each of its paths' channels."""
    def select(idx: list[int]) -> slice | torch.Tensor:
        if idx == list(range(idx[0], idx[0] + len(idx))):  # contiguous: a view is enough
            return slice(idx[0], idx[0] + len(idx))
        return torch.tensor(idx, dtype=torch.long)

    return {c: tuple(select(idx) for idx in windows)
            for c, windows in channel_paths(widths, total, policy).items()}
