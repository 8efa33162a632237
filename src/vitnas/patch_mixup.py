"""ViT-ResNAS's patch-level mixup and its patch-head loss (released token_mixup.py, SwitchTokenMix,
after Patch-Token Mix, arXiv 2104.12753), for supernet.patch_mixup.

Every released supernet and retraining script sets `--use-patch-mixup`: it replaces timm's
Mixup/CutMix (main.py sets mixup_fn to None), and the network's `patch_head` learns a label for
each token of the last stage's grid. Each batch is split in two halves (token_mixup.py __call__):

- the first half gets patch-level CutMix: a box of whole grid cells (area fraction 1 - lam,
  lam ~ Beta(1, 1)) is pasted from another image of the half at the same place; the image label is
  mixed by lam, every patch keeps its own image's (smoothed) label, the pasted cells the other's;
- the second half gets image Mixup (lam ~ Beta(0.8, 0.8)), every patch the mixed label.

The loss (engine.py train_one_epoch) is soft-target cross-entropy of the logits plus that of the
patch logits, averaged over patches. Randomness comes from a generator the caller seeds per step.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from timm.loss import SoftTargetCrossEntropy

IMAGE_MIXUP_ALPHA = 0.8  # token_mixup.py _image_mixup_fn: np.random.beta(0.8, 0.8), "following DeiT"


def smoothed_one_hot(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    return torch.full((len(y), num_classes), off, device=y.device).scatter_(1, y.long().view(-1, 1), 1 - smoothing + off)


def _randint(rng: np.random.Generator, low: int, high: int) -> int:
    """np.random.randint(low, high) with an empty range read as [low, low + 1) (my_randint)."""
    return int(rng.integers(low, high if high > low else low + 1))


def cell_box(rng: np.random.Generator, grid: int) -> tuple[int, int, int, int, float]:
    """A box of grid cells (top, bottom, left, right) and the image label's weight lam = 1 - its
    area fraction, as the released _gen_random_bbox draws them."""
    cells = int(grid * grid * rng.beta(1.0, 1.0))
    h = _randint(rng, 1, max(1, min(grid, cells) - 1))
    w = cells // h
    if w > grid:
        w = grid
        h = cells // w
    top, left = _randint(rng, 0, max(0, grid - h)), _randint(rng, 0, max(0, grid - w))
    return top, top + h, left, left + w, 1 - h * w / (grid * grid)


class PatchMixup:
    """Mixes a batch (x, labels) into (x, (targets, patch targets [B, grid * grid, classes]))."""

    def __init__(self, grid: int, num_classes: int, smoothing: float):
        self.grid, self.num_classes, self.smoothing = grid, num_classes, smoothing

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
        half = len(x) // 2
        x = x.clone()
        t = smoothed_one_hot(y, self.num_classes, self.smoothing)
        targets, patches = torch.empty_like(t), t[:, None].repeat(1, self.grid * self.grid, 1)
        if half:
            targets[:half], patches[:half] = self._patch_half(x[:half], t[:half], rng)
        targets[half:], patches[half:] = self._image_half(x[half:], t[half:], rng)
        return x, (targets, patches)

    def _patch_half(self, x: torch.Tensor, t: torch.Tensor, rng: np.random.Generator):
        """Patch-level CutMix in place on `x` (_patch_mixup_fn)."""
        partner = torch.from_numpy(rng.permutation(len(x))).to(x.device)
        top, bottom, left, right, lam = cell_box(rng, self.grid)
        side = x.shape[-1] // self.grid  # pixels per cell (H // patch_len)
        rows, cols = slice(side * top, side * bottom), slice(side * left, side * right)
        x[:, :, rows, cols] = x[partner][:, :, rows, cols]
        patches = t[:, None, None].repeat(1, self.grid, self.grid, 1)
        patches[:, top:bottom, left:right] = patches[partner][:, top:bottom, left:right]
        return lam * t + (1 - lam) * t[partner], patches.flatten(1, 2)

    def _image_half(self, x: torch.Tensor, t: torch.Tensor, rng: np.random.Generator):
        """Image Mixup in place on `x` (_image_mixup_fn)."""
        partner = torch.from_numpy(rng.permutation(len(x))).to(x.device)
        lam = float(rng.beta(IMAGE_MIXUP_ALPHA, IMAGE_MIXUP_ALPHA))
        x.copy_(lam * x + (1 - lam) * x[partner])
        mixed = lam * t + (1 - lam) * t[partner]
        return mixed, mixed[:, None].repeat(1, self.grid * self.grid, 1)


class PatchMixupLoss(nn.Module):
    """Soft-target cross-entropy of the logits plus that of the patch logits (mean over patches)."""

    def __init__(self):
        super().__init__()
        self.soft = SoftTargetCrossEntropy()

    def forward(self, output: tuple[torch.Tensor, torch.Tensor], target: tuple[torch.Tensor, torch.Tensor]):
        (logits, patch_logits), (targets, patch_targets) = output, target
        return self.soft(logits, targets) + self.soft(patch_logits, patch_targets)
