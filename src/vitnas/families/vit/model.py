"""A stand-alone ViT for one `Arch`: what a sub-network becomes after export, and what retraining
trains from scratch.

Layers are timm's (`PatchEmbed`, `Block`, `Attention`, `Mlp`), so the state-dict keys are timm's
`vision_transformer` keys (`patch_embed.proj`, `blocks.N.attn.qkv`, ...) even though every block may
have its own heads, QKV width and MLP width.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import Mlp, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.layers.attention import Attention
from timm.models.vision_transformer import Block

from ...arch import Arch, Layer


def make_block(embed: int, layer: Layer, drop_path: float = 0.0) -> Block:
    """A timm `Block` whose attention and MLP widths come from `layer`, not from `embed`."""
    block = Block(embed, num_heads=1, mlp_ratio=1.0, qkv_bias=True, drop_path=drop_path)
    # timm's Block derives QKV width and MLP width from `dim`; swap in the searched widths.
    block.attn = Attention(embed, num_heads=layer.heads, attn_head_dim=layer.head_dim, qkv_bias=True)
    block.mlp = Mlp(embed, hidden_features=layer.mlp)
    return block


class ViT(nn.Module):
    """DeiT-style classifier: patch embedding, class token, absolute position embedding, the
    arch's blocks (identity layers dropped), final LayerNorm, linear head on the class token."""

    def __init__(self, arch: Arch, img_size: int, in_chans: int, num_classes: int,
                 drop_path: float = 0.0):
        super().__init__()
        self.arch = arch
        self.embed_dim = e = arch.embed
        self.in_chans = in_chans
        # Non-strict size: detection feeds larger canvases (position embeddings are resampled).
        self.patch_embed = PatchEmbed(img_size, arch.patch, in_chans, e, strict_img_size=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, e))
        blocks = arch.blocks
        rates = [drop_path * i / max(len(blocks) - 1, 1) for i in range(len(blocks))]
        self.blocks = nn.Sequential(*[make_block(e, l, r) for l, r in zip(blocks, rates)])
        self.norm = nn.LayerNorm(e, eps=1e-6)
        self.head = nn.Linear(e, num_classes)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_weights)

    def set_fused_attn(self, fused: bool) -> None:
        """Explicit-matmul attention (fused=False) is what FlopCounterMode can see on the CPU."""
        for block in self.blocks:
            block.attn.fused_attn = fused

    @property
    def feature_info(self) -> list[dict]:
        """timm's feature description: one entry per block (all at the patch stride)."""
        return [{"num_chs": self.embed_dim, "reduction": self.arch.patch, "module": f"blocks.{i}"}
                for i in range(len(self.blocks))]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Class token + patch tokens after the position embedding: [B, 1 + N, e]."""
        grid = (x.shape[-2] // self.arch.patch, x.shape[-1] // self.arch.patch)
        x = self.patch_embed(x)
        pos = self.pos_embed
        if grid != tuple(self.patch_embed.grid_size):  # another input size: resample the grid
            pos = resample_abs_pos_embed(pos, grid, self.patch_embed.grid_size, num_prefix_tokens=1)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens through every block and the final norm: [B, 1 + N, e]."""
        return self.norm(self.blocks(self.tokens(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x[:, 0])

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None,
                              norm: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False):
        """timm's interface: the patch-token maps [B, e, H / patch, W / patch] after the blocks
        `indices` (an int n: the last n; default: the last block), through the final norm if
        `norm`; with the final features unless `intermediates_only`."""
        if output_fmt != "NCHW":
            raise ValueError("only output_fmt='NCHW' is supported")
        n = len(self.blocks)
        take = [n - 1] if indices is None else (list(range(n - indices, n)) if isinstance(indices, int)
                                                 else [i % n for i in indices])
        h, w = x.shape[-2] // self.arch.patch, x.shape[-1] // self.arch.patch
        x, maps = self.tokens(x), []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in take:
                y = self.norm(x) if norm else x
                maps.append(y[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, h, w))
        return maps if intermediates_only else (self.norm(x), maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def init_weights(m: nn.Module) -> None:
    """timm's ViT initialisation: truncated-normal linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
