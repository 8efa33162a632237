"""The single-stage ViT supernet (ViTAS / AutoFormer style).

One set of maximal weights; a sub-network is picked per forward call by `arch`, never stored in the
modules, so one step can serve any architecture. Every module hands out its sliced weights under
timm's state-dict keys (`sub_weights`), and both `forward` and `export` use exactly those tensors:
export equivalence holds by construction, not by keeping two slicing codes in step.

Private per patch size (ViTAS v1, `private_tokens`): patch embedding, class token and position
embedding. Without it there is one of each: the patch kernel of the largest patch size, resampled
to smaller ones with FlexiViT's pseudo-inverse resize, and the position table of the finest token
grid, resampled bicubically to coarser ones (both timm's), as a supernet over several patch sizes
would share them otherwise. Optionally private per head count (ViTAS v1 "private self-attention
maps", `private_qk`): the Q and K projections, with V and the output projection shared.

With bilateral sharing a sub-network runs on two channel windows and its logits are the sum of the
two paths; `export` returns one of them (see `export`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, resample_abs_pos_embed, trunc_normal_
from timm.layers.patch_embed import PatchEmbedResamplerFixedOrigSize

from ...arch import Arch, Layer
from ...supernet.base import Supernet
from ...supernet.blocks import LN_EPS, block_forward
from ...supernet.multi import forward_each
from ...supernet.sharing import channel_selector
from .model import ViT
from .space import ViTSpace

class SuperBlock(nn.Module):
    """A pre-norm transformer block at maximal widths (C tokens, Q QKV, M MLP).

    `private_qk`: one Q/K projection (2Q rows, [Q | K]) per head-count choice in `heads`, so that
    attention maps of different head counts do not have to share weights; V stays one projection.
    """

    def __init__(self, C: int, Q: int, M: int, heads: tuple[int, ...] = (), private_qk: bool = False,
                 drop_path: float = 0.0):
        super().__init__()
        self.Q, self.private_qk = Q, private_qk
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()  # training only
        self.norm1 = nn.LayerNorm(C, eps=LN_EPS)
        if private_qk:
            self.qk = nn.ModuleDict({str(h): nn.Linear(C, 2 * Q) for h in heads})
            self.v = nn.Linear(C, Q)
        else:
            self.qkv = nn.Linear(C, 3 * Q)
        self.proj = nn.Linear(Q, C)
        self.norm2 = nn.LayerNorm(C, eps=LN_EPS)
        self.fc1 = nn.Linear(C, M)
        self.fc2 = nn.Linear(M, C)

    def qkv_weights(self, layer: Layer, ch) -> tuple[torch.Tensor, torch.Tensor]:
        """timm's fused QKV weight [3q, c] and bias [3q] for `layer` over token channels `ch`.

        Rows are [Q | K | V], each head-major, so a q-wide layer takes the first q rows of each
        (not a prefix of the fused matrix).
        """
        q, Q = layer.qkv, self.Q
        if not self.private_qk:
            w = self.qkv.weight.view(3, Q, -1)[:, :q][:, :, ch]
            return w.reshape(3 * q, -1), self.qkv.bias.view(3, Q)[:, :q].reshape(3 * q)
        qk = self.qk[str(layer.heads)]  # this head count's own Q and K
        w = torch.cat([qk.weight.view(2, Q, -1)[:, :q][:, :, ch], self.v.weight[None, :q][:, :, ch]])
        b = torch.cat([qk.bias.view(2, Q)[:, :q], self.v.bias[None, :q]])
        return w.reshape(3 * q, -1), b.reshape(3 * q)

    def sub_weights(self, layer: Layer, ch) -> dict[str, torch.Tensor]:
        """This block's weights for `layer` over token channels `ch`, keyed like timm's Block."""
        q, m = layer.qkv, layer.mlp
        qkv_w, qkv_b = self.qkv_weights(layer, ch)
        return {
            "norm1.weight": self.norm1.weight[ch], "norm1.bias": self.norm1.bias[ch],
            "attn.qkv.weight": qkv_w, "attn.qkv.bias": qkv_b,
            "attn.proj.weight": self.proj.weight[ch, :q], "attn.proj.bias": self.proj.bias[ch],
            "norm2.weight": self.norm2.weight[ch], "norm2.bias": self.norm2.bias[ch],
            "mlp.fc1.weight": self.fc1.weight[:m, ch], "mlp.fc1.bias": self.fc1.bias[:m],
            "mlp.fc2.weight": self.fc2.weight[ch, :m], "mlp.fc2.bias": self.fc2.bias[ch],
        }

    def forward(self, x: torch.Tensor, layer: Layer, ch) -> torch.Tensor:
        return block_forward(x, self.sub_weights(layer, ch), layer, self.drop_path)


class ViTSupernet(Supernet):
    def __init__(self, space: ViTSpace, sharing: str = "cyclic", private_qk: bool = True,
                 drop_path: float = 0.0, private_tokens: bool = True):
        super().__init__()
        self.space, self.private_tokens = space, private_tokens
        C, Q, M = space.embed_dims[-1], space.qkv_dims[-1], space.mlp_dims[-1]
        self.paths = channel_selector(space.embed_dims, C, sharing)  # per width: 1 or 2 windows
        # Per key, a patch kernel size and a position-table length: one key per patch size, or one
        # shared key with the largest kernel and the finest token grid.
        if private_tokens:
            tables = {str(p): (p, space.tokens(p)) for p in space.patch_sizes}
        else:
            tables = {"shared": (max(space.patch_sizes), space.tokens(min(space.patch_sizes)))}
            self.resample_kernel = PatchEmbedResamplerFixedOrigSize((max(space.patch_sizes),) * 2)
        self.patch_embed = nn.ModuleDict(
            {k: nn.Conv2d(space.in_chans, C, p, stride=p) for k, (p, _) in tables.items()})
        self.cls_token = nn.ParameterDict({k: nn.Parameter(torch.zeros(1, 1, C)) for k in tables})
        self.pos_embed = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(1, n, C)) for k, (_, n) in tables.items()})
        # Stochastic depth grows with the layer index as in timm (off in ViTAS's weak recipe).
        rates = [drop_path * i / max(space.max_layers - 1, 1) for i in range(space.max_layers)]
        self.blocks = nn.ModuleList(SuperBlock(C, Q, M, space.heads, private_qk, rate) for rate in rates)
        self.norm = nn.LayerNorm(C, eps=LN_EPS)
        self.head = nn.Linear(C, space.num_classes)
        for k in tables:
            trunc_normal_(self.pos_embed[k], std=0.02)
            trunc_normal_(self.cls_token[k], std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def stem_weights(self, arch: Arch, ch) -> dict[str, torch.Tensor]:
        """Patch embedding, tokens, final norm and head for `arch` on channels `ch`, keyed like
        timm's ViT."""
        p = str(arch.patch) if self.private_tokens else "shared"
        kernel, pos = self.patch_embed[p].weight[ch], self.pos_embed[p][..., ch]
        if not self.private_tokens:  # resampled to this patch size and its token grid
            kernel = self.resample_kernel(kernel, [arch.patch] * 2)
            side = self.space.img_size // arch.patch
            pos = resample_abs_pos_embed(pos, [side, side], num_prefix_tokens=1)
        return {
            "patch_embed.proj.weight": kernel,
            "patch_embed.proj.bias": self.patch_embed[p].bias[ch],
            "cls_token": self.cls_token[p][..., ch], "pos_embed": pos,
            "norm.weight": self.norm.weight[ch], "norm.bias": self.norm.bias[ch],
            "head.weight": self.head.weight[:, ch], "head.bias": self.head.bias,
        }

    def forward(self, x: torch.Tensor, arch: Arch | list[Arch], path: int | None = None) -> torch.Tensor:
        """Logits of `arch`: the sum over its channel paths (one unless sharing is bilateral), or
        only path number `path`. A list of k archs: one equal sub-batch of `x` through each."""
        if isinstance(arch, (list, tuple)):
            return forward_each(lambda part, a: self(part, a, path), x, arch)
        paths = self.paths[arch.embed]
        if path is not None:
            return self.forward_path(x, arch, paths[path])
        if len(paths) == 1:
            return self.forward_path(x, arch, paths[0])
        first, last = paths  # bilateral: two contiguous windows (slices)
        if first == last:  # full width: both windows are every channel, one pass is enough
            return 2 * self.forward_path(x, arch, first)
        return self.forward_path(x, arch, first) + self.forward_path(x, arch, last)

    def forward_path(self, x: torch.Tensor, arch: Arch, ch) -> torch.Tensor:
        """Logits of `arch` on token channels `ch`."""
        w = self.stem_weights(arch, ch)
        x = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=arch.patch)
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([w["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + w["pos_embed"]
        for block, layer in zip(self.blocks, arch.layers):  # identity layers are skipped
            if not layer.identity:
                x = block(x, layer, ch)
        x = F.layer_norm(x[:, 0], (arch.embed,), w["norm.weight"], w["norm.bias"], LN_EPS)
        return F.linear(x, w["head.weight"], w["head.bias"])

    def sub_state_dict(self, arch: Arch, path: int = 0) -> dict[str, torch.Tensor]:
        """The weights of `arch`'s path `path` under the exported `ViT`'s keys (active blocks
        renumbered)."""
        ch = self.paths[arch.embed][path]
        state = self.stem_weights(arch, ch)
        active = [(block, layer) for block, layer in zip(self.blocks, arch.layers) if not layer.identity]
        for j, (block, layer) in enumerate(active):
            state.update({f"blocks.{j}.{k}": v for k, v in block.sub_weights(layer, ch).items()})
        return state


@torch.no_grad()
def export(supernet: ViTSupernet, arch: Arch, path: int = 0) -> ViT:
    """A stand-alone timm-block `ViT` carrying `arch`'s inherited weights, in eval mode (call
    `.train()` to fine-tune it).

    With prefix or cyclic sharing `export(net, arch)(x) == net(x, arch)`. With bilateral sharing
    the supernet scores a width by the sum of two paths (first-c and last-c channels), but the
    deployable network is one ViT of width c, as in BCNet, whose found widths are retrained as
    ordinary networks: `export` returns path `path` (0 = the first-c channels, 1 = the last-c), so
    that `net(x, arch) == export(net, arch, 0)(x) + export(net, arch, 1)(x)` and the exported
    model's MACs are the analytic count of `arch` (a model carrying both paths would cost twice
    the budget it was searched under).
    """
    sp = supernet.space
    model = ViT(arch, sp.img_size, sp.in_chans, sp.num_classes)
    state = {k: v.detach().clone().contiguous() for k, v in supernet.sub_state_dict(arch, path).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()  # the contract: eval mode, whatever mode the supernet is in
