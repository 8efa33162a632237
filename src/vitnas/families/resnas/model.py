"""A stand-alone ViT-ResNAS network for one `Arch`: what a sub-network becomes after export, and
what retraining trains from scratch.

As the released `FlexibleDistillVisionTransformerSR` (patch_conv.py, vit_sr_supernet.py) with one
class token: a conv stem (optional), a patch projection, per stage a position embedding and timm
`Block`s (each with its own heads, QKV width and MLP width), a spatial reduction between stages,
a final LayerNorm and a linear head on the class token.

With `patch_head` (retrain.patch_mixup) the released `patch_head` (vit_sr_supernet.py:346-350, the
`..._patch_output` model every released retraining script builds) predicts a label for every
last-stage patch token after the final norm, and `forward` returns (logits, patch logits) in
training mode. It is a training aid only: eval mode returns the logits alone, as released, and
`drop_patch_head` leaves the inference model, whose keys are those of a model built without it.

`reduce_tokens` is the spatial reduction as a function of its weights, shared with the supernet, so
that the two cannot drift apart.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed, trunc_normal_

from ...arch import Arch
from ..vit.model import init_weights, make_block
from .space import token_grids

LN_EPS = 1e-6  # timm's ViT LayerNorm epsilon, as the released MaskedLayerNorm


class ConvStem(nn.Module):
    """The released conv stem (patch_conv.py): conv3x3 stride 2 + BN + ReLU, then two conv3x3 +
    BN + ReLU with a residual around them (added after the last ReLU). Not searched: the supernet
    shares one, and export copies it whole (BatchNorm statistics included)."""

    def __init__(self, in_chans: int, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, channels, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        res = x
        x = F.relu(self.bn2(self.conv2(x)))
        return F.relu(self.bn3(self.conv3(x))) + res


def reduce_tokens(x: torch.Tensor, grid: tuple[int, int], w: dict[str, torch.Tensor],
                  residual: bool) -> tuple[torch.Tensor, tuple[int, int]]:
    """The released residual spatial reduction (SpatialReductionPatchEmbedding, patch 2) with
    weights `w` (norm.weight/bias, conv.weight/bias, token.weight/bias, pos_embed):
    [B, 1 + h w, c] tokens on an h x w grid -> [B, 1 + h' w', c'] on the halved grid.

    One LayerNorm over the class token and the patches; patches: conv3x3 stride 2 padding 1, plus
    the new stage's position embedding; class token: a linear map. With `residual`, the pre-norm
    tokens are added back: the patches 2x2-average-pooled (ceil_mode, so an odd grid keeps its
    last row and column), the class token as is, both zero-padded to the new width.
    """
    B, _, c = x.shape
    h, wd = grid
    c_out = w["conv.weight"].shape[0]
    y = F.layer_norm(x, (c,), w["norm.weight"], w["norm.bias"], LN_EPS)
    patches = F.conv2d(y[:, 1:].transpose(1, 2).reshape(B, c, h, wd), w["conv.weight"], w["conv.bias"],
                       stride=2, padding=1)
    new = tuple(patches.shape[-2:])
    pos = w["pos_embed"]
    side = math.isqrt(pos.shape[1])  # stored for the square grid of img_size
    if new != (side, side):  # another input size: resample the grid
        pos = resample_abs_pos_embed(pos, list(new), [side, side], num_prefix_tokens=0)
    patches = patches.flatten(2).transpose(1, 2) + pos
    out = torch.cat([F.linear(y[:, :1], w["token.weight"], w["token.bias"]), patches], dim=1)
    if residual:
        pooled = F.avg_pool2d(x[:, 1:].transpose(1, 2).reshape(B, c, h, wd), 2, 2, ceil_mode=True)
        skip = torch.cat([x[:, :1], pooled.flatten(2).transpose(1, 2)], dim=1)
        out = out + F.pad(skip, (0, c_out - c))  # zeros on the last channels
    return out, new


class SpatialReduction(nn.Module):
    """`reduce_tokens` with its own weights: c_in -> c_out channels, onto a grid x grid table of
    position embeddings."""

    def __init__(self, c_in: int, c_out: int, grid: int, residual: bool = True):
        super().__init__()
        if residual and c_out < c_in:
            raise ValueError(f"a residual spatial reduction cannot narrow {c_in} to {c_out} channels "
                             "(it zero-pads the skip); use non-decreasing stage widths")
        self.residual = residual
        self.norm = nn.LayerNorm(c_in, eps=LN_EPS)
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.token = nn.Linear(c_in, c_out)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, c_out))

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        return reduce_tokens(x, grid, dict(self.named_parameters()), self.residual)


class ResNASStage(nn.Module):
    """A spatial reduction (none in the first stage), then the stage's blocks."""

    def __init__(self, blocks: list[nn.Module], reduce: SpatialReduction | None = None):
        super().__init__()
        self.reduce = reduce
        self.blocks = nn.Sequential(*blocks)


class ResNASViT(nn.Module):
    """The multi-stage classifier of one `Arch` (identity layers dropped). `residual`: residual
    spatial reduction (ViT-ResNAS) or plain (the ablation)."""

    patch_grid: int | None = None
    """With a patch head: the side of the last stage's token grid it predicts labels for."""

    def __init__(self, arch: Arch, img_size: int, in_chans: int, num_classes: int, residual: bool = True,
                 drop_path: float = 0.0, patch_head: bool = False):
        super().__init__()
        self.arch, self.in_chans, self.residual = arch, in_chans, residual
        self.embed_dim = arch.stages[-1].embed
        grids = token_grids(arch, img_size)
        self.grid = grids[0]
        e0 = arch.stages[0].embed
        self.stem = ConvStem(in_chans, arch.stem) if arch.stem else None
        k = arch.patch // 2 if arch.stem else arch.patch  # the stem has already halved the image
        self.patch_embed = nn.Conv2d(arch.stem or in_chans, e0, k, stride=k)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e0))
        self.pos_embed = nn.Parameter(torch.zeros(1, grids[0] ** 2 + 1, e0))
        n = arch.depth
        rates = iter([drop_path * i / max(n - 1, 1) for i in range(n)])
        stages = []
        for s, stage in enumerate(arch.stages):
            reduce = (SpatialReduction(arch.stages[s - 1].embed, stage.embed, grids[s], residual) if s else None)
            stages.append(ResNASStage([make_block(stage.embed, l, next(rates)) for l in stage.blocks], reduce))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(self.embed_dim, eps=LN_EPS)
        self.head = nn.Linear(self.embed_dim, num_classes)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for stage in self.stages[1:]:
            trunc_normal_(stage.reduce.pos_embed, std=0.02)
        self.apply(init_weights)
        self.patch_head = None
        if patch_head:  # made last, so that every other weight is drawn as without it
            self.patch_head = nn.Linear(self.embed_dim, num_classes)
            init_weights(self.patch_head)
            self.patch_grid = grids[-1]

    def drop_patch_head(self) -> "ResNASViT":
        """The inference model: the patch head removed (its state dict then loads into a model built
        without one); the eval-mode logits are unchanged, the head never reaches them."""
        self.patch_head, self.patch_grid = None, None
        return self

    def set_fused_attn(self, fused: bool) -> None:
        """Explicit-matmul attention (fused=False) is what FlopCounterMode can see on the CPU."""
        for stage in self.stages:
            for block in stage.blocks:
                block.attn.fused_attn = fused

    @property
    def feature_info(self) -> list[dict]:
        """timm's feature description: one entry per block; stage s runs at stride patch x 2^s."""
        return [{"num_chs": stage.embed, "reduction": self.arch.patch * 2 ** s, "module": f"stages.{s}.blocks.{j}"}
                for s, stage in enumerate(self.arch.stages) for j in range(stage.depth)]

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Class token + patch tokens after the position embedding, [B, 1 + h w, e0], and (h, w)."""
        if self.stem is not None:
            x = self.stem(x)
        x = self.patch_embed(x)
        grid = tuple(x.shape[-2:])
        pos = self.pos_embed
        if grid != (self.grid, self.grid):  # another input size: resample the grid
            pos = resample_abs_pos_embed(pos, list(grid), [self.grid, self.grid], num_prefix_tokens=1)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        return x + pos, grid

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens through every stage and the final norm: [B, 1 + h w, e_last]."""
        x, grid = self.tokens(x)
        for stage in self.stages:
            if stage.reduce is not None:
                x, grid = stage.reduce(x, grid)
            x = stage.blocks(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x[:, 0])

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None,
                              norm: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False):
        """timm's interface: the patch-token maps [B, e_s, h_s, w_s] after the blocks `indices`
        (into the blocks of all stages in order; an int n: the last n; default: the last block);
        with the final features unless `intermediates_only`.

        `norm`: the final norm is applied to the maps of the last stage only; it was trained on
        the last stage's tokens, and earlier stages' maps (of other widths) come without a norm.
        """
        if output_fmt != "NCHW":
            raise ValueError("only output_fmt='NCHW' is supported")
        n = sum(len(stage.blocks) for stage in self.stages)
        take = [n - 1] if indices is None else (list(range(n - indices, n)) if isinstance(indices, int)
                                                 else [i % n for i in indices])
        x, grid = self.tokens(x)
        maps, i, last = [], 0, len(self.stages) - 1
        for s, stage in enumerate(self.stages):
            if stage.reduce is not None:
                x, grid = stage.reduce(x, grid)
            for block in stage.blocks:
                x = block(x)
                if i in take:
                    y = self.norm(x) if norm and s == last else x
                    maps.append(y[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, *grid))
                i += 1
        return maps if intermediates_only else (self.norm(x), maps)

    def forward(self, x: torch.Tensor):
        """Logits; with a patch head in training mode, (logits, patch logits [B, tokens, classes])."""
        x = self.forward_features(x)
        if self.patch_head is not None and self.training:  # every token normed: the patch head reads them
            return self.forward_head(x), self.patch_head(x[:, 1:])
        return self.forward_head(x)
