"""The ViT-ResNAS supernet: one set of weights at maximal widths, shared by keep-first-k slicing
(the released vit_sr_supernet.py, masks replaced by slices).

A sub-network takes the first e channels of its stage's width, the first h heads (the first
h x head_dim rows of each of Q, K and V), the first m MLP units and, at each LayerNorm, the norm
over its active channels only. As in the single-stage supernet, every module hands out its sliced
weights under the stand-alone `ResNASViT`'s state-dict keys (`sub_state_dict`), and `forward` uses
exactly those tensors: export equivalence holds by construction.

`forward(x, archs)` is the released multi-architectural sampling: the batch is split into one
sub-batch per architecture (contiguous, or interleaved as released with
supernet.multi_arch_draw: balanced), the shared conv stem runs once over the whole batch, and
the logits come back in batch order, so one backward pass trains every sub-network. `resort_` is
the released re-sorting ("rewiring") of heads and MLP units by L1 importance during progressive
unlocking, so that prefixes keep the most important units.

With supernet.patch_mixup a `patch_head` (the released `patch_head`, vit_sr_supernet.py:346-350)
predicts a label for every patch token of the last stage, after the final norm; in training mode
`forward` then returns (logits, patch logits). It is a training aid only: eval mode and the
exported model have no patch head, as released.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_

from ...arch import Arch, Layer
from ...supernet.base import Supernet
from ...supernet.blocks import block_forward
from ...supernet.multi import merge_batch, split_batch
from .model import LN_EPS, ConvStem, ResNASViT, reduce_tokens
from .space import ResNASSpace, token_grids


class SuperBlock(nn.Module):
    """A pre-norm transformer block at maximal widths: C tokens, H heads of `head_dim`, M MLP."""

    def __init__(self, C: int, H: int, head_dim: int, M: int, drop_path: float = 0.0):
        super().__init__()
        self.H, self.head_dim = H, head_dim
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()  # training only
        Q = H * head_dim
        self.norm1 = nn.LayerNorm(C, eps=LN_EPS)
        self.qkv = nn.Linear(C, 3 * Q)  # rows [Q | K | V], each head-major
        self.proj = nn.Linear(Q, C)
        self.norm2 = nn.LayerNorm(C, eps=LN_EPS)
        self.fc1 = nn.Linear(C, M)
        self.fc2 = nn.Linear(M, C)

    def sub_weights(self, layer: Layer, e: int) -> dict[str, torch.Tensor]:
        """This block's weights for `layer` on the first `e` token channels, keyed like timm's
        Block; a q-wide layer takes the first q rows of each of Q, K and V (its first heads)."""
        q, m, Q = layer.qkv, layer.mlp, self.H * self.head_dim
        return {
            "norm1.weight": self.norm1.weight[:e], "norm1.bias": self.norm1.bias[:e],
            "attn.qkv.weight": self.qkv.weight.view(3, Q, -1)[:, :q, :e].reshape(3 * q, e),
            "attn.qkv.bias": self.qkv.bias.view(3, Q)[:, :q].reshape(3 * q),
            "attn.proj.weight": self.proj.weight[:e, :q], "attn.proj.bias": self.proj.bias[:e],
            "norm2.weight": self.norm2.weight[:e], "norm2.bias": self.norm2.bias[:e],
            "mlp.fc1.weight": self.fc1.weight[:m, :e], "mlp.fc1.bias": self.fc1.bias[:m],
            "mlp.fc2.weight": self.fc2.weight[:e, :m], "mlp.fc2.bias": self.fc2.bias[:e],
        }

    def forward(self, x: torch.Tensor, layer: Layer) -> torch.Tensor:
        return block_forward(x, self.sub_weights(layer, x.shape[-1]), layer, self.drop_path)

    @torch.no_grad()
    def resort_(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Re-sort heads and MLP units by L1 importance, descending (released supernet_blocks.py
        rewiring): a head scores the |weights| and |biases| of its Q, K and V rows plus its
        projection columns; an MLP unit its fc1 row and bias plus its fc2 column. A permutation of
        whole heads and units leaves the full block's function unchanged."""
        H, d, C = self.H, self.head_dim, self.qkv.weight.shape[1]
        score = (self.qkv.weight.abs().view(3, H, d, C).sum((0, 2, 3)) + self.qkv.bias.abs().view(3, H, d).sum((0, 2))
                 + self.proj.weight.abs().view(C, H, d).sum((0, 2)))
        heads = torch.argsort(score, descending=True, stable=True)
        rows = (heads[:, None] * d + torch.arange(d)).reshape(-1)  # the head's rows within Q, K or V
        qkv_rows = torch.cat([rows + i * H * d for i in range(3)])
        _permute_(self.qkv.weight, qkv_rows, 0, optimizer)
        _permute_(self.qkv.bias, qkv_rows, 0, optimizer)
        _permute_(self.proj.weight, rows, 1, optimizer)
        score = self.fc1.weight.abs().sum(1) + self.fc1.bias.abs() + self.fc2.weight.abs().sum(0)
        units = torch.argsort(score, descending=True, stable=True)
        _permute_(self.fc1.weight, units, 0, optimizer)
        _permute_(self.fc1.bias, units, 0, optimizer)
        _permute_(self.fc2.weight, units, 1, optimizer)


def _permute_(p: nn.Parameter, index: torch.Tensor, dim: int, optimizer) -> None:
    """Reorder `p` along `dim` in place, and the optimizer's per-parameter state tensors of its
    shape (AdamW's moments) the same way, so that they stay with their weights."""
    index = index.to(p.device)
    p.copy_(p.index_select(dim, index))
    if optimizer is not None:
        for value in optimizer.state.get(p, {}).values():
            if torch.is_tensor(value) and value.shape == p.shape:
                value.copy_(value.index_select(dim, index.to(value.device)))


class SuperReduction(nn.Module):
    """The spatial reduction between two stages at maximal widths (C_in -> C_out channels)."""

    def __init__(self, C_in: int, C_out: int, grid: int):
        super().__init__()
        self.norm = nn.LayerNorm(C_in, eps=LN_EPS)
        self.conv = nn.Conv2d(C_in, C_out, 3, stride=2, padding=1)
        self.token = nn.Linear(C_in, C_out)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, C_out))

    def sub_weights(self, e_in: int, e_out: int) -> dict[str, torch.Tensor]:
        """The weights from the first `e_in` channels to the first `e_out`, keyed like the
        stand-alone `SpatialReduction`."""
        return {"norm.weight": self.norm.weight[:e_in], "norm.bias": self.norm.bias[:e_in],
                "conv.weight": self.conv.weight[:e_out, :e_in], "conv.bias": self.conv.bias[:e_out],
                "token.weight": self.token.weight[:e_out, :e_in], "token.bias": self.token.bias[:e_out],
                "pos_embed": self.pos_embed[..., :e_out]}


class SuperStage(nn.Module):
    def __init__(self, blocks: list[SuperBlock], reduce: SuperReduction | None):
        super().__init__()
        self.reduce = reduce
        self.blocks = nn.ModuleList(blocks)


class ResNASSupernet(Supernet):
    def __init__(self, space: ResNASSpace, drop_path: float = 0.0, patch_head: bool = False,
                 resort_at_warmup_end: bool = False):
        super().__init__()
        self.space = space
        self.interleave = space.multi_arch_draw == "balanced"  # released: interleaved sub-batches
        self.resort_at_warmup_end = resort_at_warmup_end
        largest = space.largest()
        grids = token_grids(largest, space.img_size)
        widths = [st.embed_dims[-1] for st in space.stages]
        self.stem = ConvStem(space.in_chans, space.stem_channels) if space.stem_channels else None
        k = space.patch // 2 if space.stem_channels else space.patch
        self.patch_embed = nn.Conv2d(space.stem_channels or space.in_chans, widths[0], k, stride=k)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, widths[0]))
        self.pos_embed = nn.Parameter(torch.zeros(1, grids[0] ** 2 + 1, widths[0]))
        # Stochastic depth grows over every position, removable ones included (as released).
        n = space.max_depth
        rates = iter([drop_path * i / max(n - 1, 1) for i in range(n)])
        self.stages = nn.ModuleList(
            SuperStage([SuperBlock(widths[s], st.heads[-1], st.head_dim, st.mlp_dims[-1], next(rates))
                        for _ in range(st.blocks)],
                       SuperReduction(widths[s - 1], widths[s], grids[s]) if s else None)
            for s, st in enumerate(space.stages))
        self.norm = nn.LayerNorm(widths[-1], eps=LN_EPS)
        self.head = nn.Linear(widths[-1], space.num_classes)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for stage in self.stages[1:]:
            trunc_normal_(stage.reduce.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        if patch_head:  # made last, so that every other weight is drawn as without it
            self.patch_head = nn.Linear(widths[-1], space.num_classes)
            trunc_normal_(self.patch_head.weight, std=0.02)
            nn.init.zeros_(self.patch_head.bias)
            self.patch_grid = grids[-1]

    def outer_weights(self, arch: Arch) -> dict[str, torch.Tensor]:
        """Patch projection, tokens, final norm and head for `arch`, keyed like `ResNASViT`."""
        e0, e = arch.stages[0].embed, arch.stages[-1].embed
        return {"patch_embed.weight": self.patch_embed.weight[:e0], "patch_embed.bias": self.patch_embed.bias[:e0],
                "cls_token": self.cls_token[..., :e0], "pos_embed": self.pos_embed[..., :e0],
                "norm.weight": self.norm.weight[:e], "norm.bias": self.norm.bias[:e],
                "head.weight": self.head.weight[:, :e], "head.bias": self.head.bias}

    def forward(self, x: torch.Tensor, archs: Arch | list[Arch]):
        """Logits of `archs` (one architecture, or a list of k: the batch is split into k equal
        sub-batches, contiguous or interleaved, sub-batch i through architecture i, logits in batch
        order); with a patch head in training mode, (logits, patch logits [B, tokens, classes])."""
        archs = [archs] if isinstance(archs, Arch) else list(archs)
        for arch in archs:  # zip would silently drop the extra stages or layers of another layout
            if [len(s.layers) for s in arch.stages] != [st.blocks for st in self.space.stages]:
                raise ValueError(f"the architecture's layers per stage {[len(s.layers) for s in arch.stages]} "
                                 f"differ from the supernet's {[st.blocks for st in self.space.stages]}")
        if self.stem is not None:
            x = self.stem(x)  # shared by every sub-network: once over the whole batch
        parts = [self.forward_arch(part, arch) for part, arch in zip(split_batch(x, len(archs), self.interleave), archs)]
        if isinstance(parts[0], tuple):
            return tuple(merge_batch(list(outs), self.interleave) for outs in zip(*parts))
        return merge_batch(parts, self.interleave)

    def forward_arch(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        """Logits of `arch` on stem outputs (or images, without a stem)."""
        w = self.outer_weights(arch)
        x = F.conv2d(x, w["patch_embed.weight"], w["patch_embed.bias"], stride=self.patch_embed.stride)
        grid = tuple(x.shape[-2:])
        x = torch.cat([w["cls_token"].expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + w["pos_embed"]
        for s, (sstage, stage) in enumerate(zip(self.stages, arch.stages)):
            if s:
                sub = sstage.reduce.sub_weights(arch.stages[s - 1].embed, stage.embed)
                x, grid = reduce_tokens(x, grid, sub, self.space.residual)
            for block, layer in zip(sstage.blocks, stage.layers):  # identity layers are skipped
                if not layer.identity:
                    x = block(x, layer)
        if self.patch_grid is not None and self.training:  # every token normed: the patch head reads them
            x = F.layer_norm(x, (x.shape[-1],), w["norm.weight"], w["norm.bias"], LN_EPS)
            patch = F.linear(x[:, 1:], self.patch_head.weight[:, :x.shape[-1]], self.patch_head.bias)
            return F.linear(x[:, 0], w["head.weight"], w["head.bias"]), patch
        x = F.layer_norm(x[:, 0], (x.shape[-1],), w["norm.weight"], w["norm.bias"], LN_EPS)
        return F.linear(x, w["head.weight"], w["head.bias"])

    def sub_state_dict(self, arch: Arch, path: int = 0) -> dict[str, torch.Tensor]:
        """The weights of `arch` under the exported `ResNASViT`'s keys (active blocks of each
        stage renumbered); `path` is not used (one channel path per width)."""
        state = self.stem.state_dict(prefix="stem.", keep_vars=True) if self.stem is not None else {}
        state.update(self.outer_weights(arch))
        for s, (sstage, stage) in enumerate(zip(self.stages, arch.stages)):
            if s:
                sub = sstage.reduce.sub_weights(arch.stages[s - 1].embed, stage.embed)
                state.update({f"stages.{s}.reduce.{k}": v for k, v in sub.items()})
            active = [(b, l) for b, l in zip(sstage.blocks, stage.layers) if not l.identity]
            for j, (block, layer) in enumerate(active):
                state.update({f"stages.{s}.blocks.{j}.{k}": v for k, v in block.sub_weights(layer, stage.embed).items()})
        return dict(state)

    def on_epoch_start(self, epoch: int, optimizer: torch.optim.Optimizer | None, warmup_epochs: float) -> None:
        """Progressive unlocking's importance re-sorting, at each warm-up epoch's start (epochs
        0 .. W-1), and at epoch W too with `resort_at_warmup_end` (released set_epoch: rewiring
        while num_warmup_epochs >= epoch, vit_sr_supernet.py:473-477)."""
        if epoch < warmup_epochs or (self.resort_at_warmup_end and epoch <= warmup_epochs):
            self.resort_(optimizer)

    @torch.no_grad()
    def resort_(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Re-sort every block's heads and MLP units by L1 importance (see `SuperBlock.resort_`);
        with `optimizer`, its per-parameter state is permuted with the weights. Token channels are
        not re-sorted (nor are they in the released code). The largest network's function is
        unchanged; smaller ones inherit the most important units."""
        for stage in self.stages:
            for block in stage.blocks:
                block.resort_(optimizer)


@torch.no_grad()
def export(supernet: ResNASSupernet, arch: Arch, path: int = 0) -> ResNASViT:
    """A stand-alone `ResNASViT` carrying `arch`'s inherited weights (and the stem's BatchNorm
    statistics) in the supernet's floating-point type, in eval mode: `export(net, arch)(x) ==
    net.eval()(x, arch)`. No patch head, as the released inference model."""
    sp = supernet.space
    model = ResNASViT(arch, sp.img_size, sp.in_chans, sp.num_classes, residual=sp.residual)
    model.to(dtype=supernet.head.weight.dtype)
    state = {k: v.detach().clone().contiguous() for k, v in supernet.sub_state_dict(arch, path).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()  # in training mode the stem's BatchNorm would use batch statistics
