"""A stand-alone Twins network for one `Arch`: what a sub-network becomes after export, and what
retraining trains from scratch.

Built from timm's Twins pieces (`timm.models.twins`: `PatchEmbed`, `Block` with
`LocallyGroupedAttn` or `GlobalSubSampleAttn`, `PosConv`) under timm's `Twins` attribute names
(`patch_embeds`, `blocks.<stage>.<block>`, `pos_block`, `norm`, `head`), so every block may have
its own heads and MLP width and a uniform architecture's state dict loads into timm's `Twins`
with strict=True.

`patch_merge`, `lsa`, `gsa`, `pos_conv` and `block_forward` are the same computations as
functions of their weights (keyed like the modules), written line for line after timm's forward
methods; the supernet runs its sliced weights through them, so that supernet and exported model
compute the same thing.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.twins import Block, PatchEmbed, PosConv, Twins

from ...arch import Arch, Layer, Stage
from .space import is_local, token_sides

LN_EPS = 1e-6     # timm's Twins: the blocks' norms and the final norm
INNER_EPS = 1e-5  # nn.LayerNorm's default: the norms inside PatchEmbed and GlobalSubSampleAttn


def make_block(embed: int, layer: Layer, local: bool, ws: int, sr: int, drop_path: float = 0.0) -> Block:
    """A timm Twins `Block`: LSA with window `ws` if `local`, else GSA with ratio `sr`; its heads and
    MLP width come from `layer`."""
    block = Block(embed, num_heads=layer.heads, mlp_ratio=layer.mlp / embed, drop_path=drop_path,
                  norm_layer=partial(nn.LayerNorm, eps=LN_EPS), sr_ratio=sr, ws=ws if local else 1)
    if block.mlp.fc1.out_features != layer.mlp:  # int(embed x ratio) may round below
        block.mlp = Mlp(embed, hidden_features=layer.mlp)
    return block


# ------------------------------------------------------------------ the computations, as functions
def patch_merge(x: torch.Tensor, w: dict[str, torch.Tensor], k: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """timm's Twins `PatchEmbed.forward`: [B, c, H, W] -> tokens [B, H/k W/k, e] and the grid."""
    size = (x.shape[-2] // k, x.shape[-1] // k)
    x = F.conv2d(x, w["proj.weight"], w["proj.bias"], stride=k).flatten(2).transpose(1, 2)
    return F.layer_norm(x, (x.shape[-1],), w["norm.weight"], w["norm.bias"], INNER_EPS), size


def lsa(x: torch.Tensor, size: tuple[int, int], w: dict[str, torch.Tensor], heads: int, ws: int) -> torch.Tensor:
    """timm's `LocallyGroupedAttn.forward` (zero padding to whole windows, fused attention)."""
    B, N, C = x.shape
    H, W = size
    x = x.reshape(B, H, W, C)
    pad_r, pad_b = (ws - W % ws) % ws, (ws - H % ws) % ws
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, Hp, Wp, _ = x.shape
    _h, _w = Hp // ws, Wp // ws
    x = x.reshape(B, _h, ws, _w, ws, C).transpose(2, 3)
    qkv = F.linear(x, w["attn.qkv.weight"], w["attn.qkv.bias"])
    q, k, v = qkv.reshape(B, _h * _w, ws * ws, 3, heads, C // heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
    x = F.scaled_dot_product_attention(q, k, v)
    x = x.transpose(2, 3).reshape(B, _h, _w, ws, ws, C)
    x = x.transpose(2, 3).reshape(B, _h * ws, _w * ws, C)
    if pad_r > 0 or pad_b > 0:
        x = x[:, :H, :W, :].contiguous()
    return F.linear(x.reshape(B, N, C), w["attn.proj.weight"], w["attn.proj.bias"])


def gsa(x: torch.Tensor, size: tuple[int, int], w: dict[str, torch.Tensor], heads: int, sr: int) -> torch.Tensor:
    """timm's `GlobalSubSampleAttn.forward` (fused attention)."""
    B, N, C = x.shape
    q = F.linear(x, w["attn.q.weight"], w["attn.q.bias"]).reshape(B, N, heads, C // heads).permute(0, 2, 1, 3)
    if sr > 1:
        x = x.permute(0, 2, 1).reshape(B, C, *size)
        x = F.conv2d(x, w["attn.sr.weight"], w["attn.sr.bias"], stride=sr).reshape(B, C, -1).permute(0, 2, 1)
        x = F.layer_norm(x, (C,), w["attn.norm.weight"], w["attn.norm.bias"], INNER_EPS)
    kv = F.linear(x, w["attn.kv.weight"], w["attn.kv.bias"]).reshape(B, -1, 2, heads, C // heads).permute(2, 0, 3, 1, 4)
    k, v = kv.unbind(0)
    x = F.scaled_dot_product_attention(q, k, v)
    return F.linear(x.transpose(1, 2).reshape(B, N, C), w["attn.proj.weight"], w["attn.proj.bias"])


def block_forward(x: torch.Tensor, size: tuple[int, int], w: dict[str, torch.Tensor], layer: Layer, local: bool,
                  ws: int, sr: int, drop_path) -> torch.Tensor:
    """timm's Twins `Block.forward` with weights `w` (keyed like the Block); `drop_path` a module
    (identity in eval)."""
    e = x.shape[-1]
    h = F.layer_norm(x, (e,), w["norm1.weight"], w["norm1.bias"], LN_EPS)
    h = lsa(h, size, w, layer.heads, ws) if local else gsa(h, size, w, layer.heads, sr)
    x = x + drop_path(h)
    h = F.layer_norm(x, (e,), w["norm2.weight"], w["norm2.bias"], LN_EPS)
    h = F.gelu(F.linear(h, w["mlp.fc1.weight"], w["mlp.fc1.bias"]))
    return x + drop_path(F.linear(h, w["mlp.fc2.weight"], w["mlp.fc2.bias"]))


def pos_conv(x: torch.Tensor, size: tuple[int, int], w: dict[str, torch.Tensor]) -> torch.Tensor:
    """timm's `PosConv.forward` (stride 1): a depthwise 3x3 conv plus its input."""
    B, N, C = x.shape
    feat = x.transpose(1, 2).reshape(B, C, *size)
    x = F.conv2d(feat, w["proj.0.weight"], w["proj.0.bias"], padding=1, groups=C) + feat
    return x.flatten(2).transpose(1, 2)


def to_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Tokens [B, h w, e] -> a map [B, e, h, w] (timm's Twins between stages)."""
    return x.reshape(x.shape[0], *size, -1).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------ latency parts (vitnas.latency_table)
class SizedBlock(nn.Module):
    """A Twins `Block` on a fixed token grid, called on the tokens alone (a latency part: so that
    copies can be chained, as the table times a block)."""

    def __init__(self, block: Block, size: tuple[int, int]):
        super().__init__()
        self.block, self.size = block, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, self.size)


class SkippedBlock(nn.Module):
    """A block that passes its tokens through: in a latency skeleton's stages, so that `TwinsNet`
    runs its own forward (patch merging, position conv, norm, head) with no block's work."""

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return x


def latency_part(kind: str, *args) -> nn.Module:
    """The module of one latency part (`TwinsSpace.latency_blocks` names it): "block" (side, embed,
    heads, mlp, local, ws, sr), a Block on a side x side grid; "skeleton" (space, embeds), TwinsNet of
    these stage widths with every stage's blocks passing their tokens through (one per stage, so its
    position conv runs)."""
    if kind == "block":
        side, embed, heads, mlp, local, ws, sr = args
        return SizedBlock(make_block(embed, Layer(heads=heads, qkv=embed, mlp=mlp), local, ws, sr), (side, side))
    space, embeds = args
    arch = Arch(patch=space.patch, family=space.family, stages=tuple(
        Stage(e, tuple(space._layer(e, st.heads[0], st.mlp_ratios[0], True) for _ in range(st.blocks)))
        for e, st in zip(embeds, space.stages)))
    net = TwinsNet(arch, space.img_size, space.in_chans, space.num_classes)
    net.blocks = nn.ModuleList(nn.ModuleList([SkippedBlock()]) for _ in arch.stages)
    return net


# ------------------------------------------------------------------ the model
class TwinsNet(nn.Module):
    """The Twins classifier of one `Arch` (identity layers dropped): per stage a patch merging,
    its blocks (LSA / GSA by index, see `space.is_local`) with the position conv after the
    first, then the final norm and a linear head on the mean token."""

    def __init__(self, arch: Arch, img_size: int, in_chans: int, num_classes: int, drop_path: float = 0.0):
        super().__init__()
        self.arch, self.in_chans = arch, in_chans
        self.embed_dim = arch.stages[-1].embed
        sides = token_sides(arch.patch, img_size, len(arch.stages))
        n = arch.depth
        rates = iter([drop_path * i / max(n - 1, 1) for i in range(n)])
        self.patch_embeds, self.blocks, self.pos_block = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c, grid = in_chans, img_size
        for s, stage in enumerate(arch.stages):
            k = arch.patch if s == 0 else 2
            self.patch_embeds.append(PatchEmbed(grid, k, c, stage.embed))
            self.blocks.append(nn.ModuleList(make_block(stage.embed, l, is_local(stage.ws, j), stage.ws or 1,
                                                        stage.sr or 1, next(rates))
                                             for j, l in enumerate(stage.blocks)))
            self.pos_block.append(PosConv(stage.embed, stage.embed))
            c, grid = stage.embed, sides[s]
        self.norm = nn.LayerNorm(self.embed_dim, eps=LN_EPS)
        self.head = nn.Linear(self.embed_dim, num_classes)
        self.apply(partial(Twins._init_weights, self))  # timm's Twins initialisation

    def no_weight_decay(self) -> set[str]:
        """As timm's Twins: the position convs are not decayed (timm's optimizer factory asks)."""
        return {"pos_block." + n for n, _ in self.pos_block.named_parameters()}

    def set_fused_attn(self, fused: bool) -> None:
        """Explicit-matmul attention (fused=False) is what FlopCounterMode can see on the CPU."""
        for stage in self.blocks:
            for block in stage:
                block.attn.fused_attn = fused

    @property
    def feature_info(self) -> list[dict]:
        """timm's feature description: one entry per block; stage s runs at stride patch x 2^s."""
        return [{"num_chs": stage.embed, "reduction": self.arch.patch * 2 ** s, "module": f"blocks.{s}.{j}"}
                for s, stage in enumerate(self.arch.stages) for j in range(stage.depth)]

    def _stages(self, x: torch.Tensor):
        """Yield (stage, block index, tokens, grid) after every block (and its position conv);
        between stages the tokens become a map for the next patch merging."""
        for s, (embed, blocks, pos) in enumerate(zip(self.patch_embeds, self.blocks, self.pos_block)):
            if s:
                x = to_map(x, size)
            x, size = embed(x)
            for j, block in enumerate(blocks):
                x = block(x, size)
                if j == 0:
                    x = pos(x, size)  # conditional position encoding after the first block
                yield s, j, x, size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's tokens through the final norm: [B, h w, e_last]."""
        for _, _, x, _ in self._stages(x):
            pass
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=1))

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None,
                              norm: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False):
        """timm's interface: the token maps [B, e_s, h_s, w_s] after the blocks `indices` (into the
        blocks of all stages in order; an int n: the last n; default: the last block); with the
        final features unless `intermediates_only`. `norm`: the final norm is applied to the last
        stage's maps only (it is sized for them, as in timm's Twins)."""
        if output_fmt != "NCHW":
            raise ValueError("only output_fmt='NCHW' is supported")
        n = len(self.feature_info)
        take = [n - 1] if indices is None else (list(range(n - indices, n)) if isinstance(indices, int)
                                                 else [i % n for i in indices])
        maps, last = [], len(self.blocks) - 1
        for i, (s, _, x, size) in enumerate(self._stages(x)):
            if i in take:
                maps.append(to_map(self.norm(x) if norm and s == last else x, size))
        return maps if intermediates_only else (self.norm(x), maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
