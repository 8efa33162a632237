"""A pre-norm transformer block computed from weights handed to it, keyed like timm's `Block`
(`norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`): every family's supernet slices
its weights for a sub-network and runs them through this one function, so what the supernet
computes is what the exported timm block computes with the same tensors."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..arch import Layer

LN_EPS = 1e-6  # timm's ViT LayerNorm epsilon, so exported blocks match


def block_forward(x: torch.Tensor, w: dict[str, torch.Tensor], layer: Layer, drop_path) -> torch.Tensor:
    """x [B, N, e] through attention (`layer.heads` heads over QKV width `layer.qkv`) and the MLP,
    each a residual branch through `drop_path` (a module: identity in eval)."""
    B, N, e = x.shape
    h = F.layer_norm(x, (e,), w["norm1.weight"], w["norm1.bias"], LN_EPS)
    qkv = F.linear(h, w["attn.qkv.weight"], w["attn.qkv.bias"])
    q, k, v = qkv.reshape(B, N, 3, layer.heads, layer.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, layer.qkv)
    x = x + drop_path(F.linear(h, w["attn.proj.weight"], w["attn.proj.bias"]))
    h = F.layer_norm(x, (e,), w["norm2.weight"], w["norm2.bias"], LN_EPS)
    h = F.gelu(F.linear(h, w["mlp.fc1.weight"], w["mlp.fc1.bias"]))
    return x + drop_path(F.linear(h, w["mlp.fc2.weight"], w["mlp.fc2.bias"]))
