"""The Twins supernet: one set of weights at maximal widths per block position, shared by slicing.

Token channels of each stage are shared by the `supernet.sharing` policy (prefix, cyclic or
bilateral windows of the stage's widest width, `vitnas.supernet.sharing`); inside a block, the
Q/K/V rows (as many as the width, split into the layer's heads as in timm) and the MLP units are
keep-first-k. A block position holds one fused Q/K/V projection serving both attention kinds: as
LSA it is timm's `attn.qkv`, as GSA its Q rows are `attn.q` and its K/V rows `attn.kv`; the
sub-sampling conv and its LayerNorm are private per ratio choice (their kernels differ in size).
So a position can compute LSA or GSA, whichever its block's index among the stage's computing
blocks asks for; with identity shifting position i is always the stage's block i.

Every module hands out its sliced weights under the stand-alone `TwinsNet`'s keys (timm's Twins
keys) and `forward` runs exactly those tensors through the model's functions: export equivalence
holds by construction. `forward(x, archs)` takes one equal sub-batch per architecture.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models.twins import Twins

from ...arch import Arch, Layer
from ...supernet.base import Supernet
from ...supernet.multi import forward_each
from ...supernet.sharing import channel_selector
from .model import LN_EPS, INNER_EPS, TwinsNet, block_forward, patch_merge, pos_conv, to_map
from .space import TwinsSpace, is_local


def _take(w: torch.Tensor, rows, cols=None) -> torch.Tensor:
    """w[rows][:, cols], for slices and index tensors alike."""
    w = w[rows]
    return w if cols is None else w[:, cols]


class SuperBlock(nn.Module):
    """A Twins block at maximal widths: C token channels, M MLP units, a sub-sampling conv per
    ratio in `srs` (ratios > 1; none if the position never computes GSA)."""

    def __init__(self, C: int, M: int, srs: tuple[int, ...] = (), drop_path: float = 0.0):
        super().__init__()
        self.C = C
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()  # training only
        self.norm1 = nn.LayerNorm(C, eps=LN_EPS)
        self.qkv = nn.Linear(C, 3 * C)  # rows [Q | K | V]
        self.proj = nn.Linear(C, C)
        self.sr = nn.ModuleDict({str(r): nn.Conv2d(C, C, r, stride=r) for r in srs})
        self.sr_norm = nn.ModuleDict({str(r): nn.LayerNorm(C, eps=INNER_EPS) for r in srs})
        self.norm2 = nn.LayerNorm(C, eps=LN_EPS)
        self.fc1 = nn.Linear(C, M)
        self.fc2 = nn.Linear(M, C)

    def sub_weights(self, layer: Layer, ch, local: bool, sr: int) -> dict[str, torch.Tensor]:
        """This block's weights for `layer` (LSA if `local`, else GSA with ratio `sr`) over token
        channels `ch`, keyed like timm's Twins Block; Q, K and V each take their first e rows."""
        e, m, C = layer.qkv, layer.mlp, self.C
        w = self.qkv.weight.view(3, C, C)[:, :e][:, :, ch]
        b = self.qkv.bias.view(3, C)[:, :e]
        out = {"norm1.weight": self.norm1.weight[ch], "norm1.bias": self.norm1.bias[ch]}
        if local:
            out |= {"attn.qkv.weight": w.reshape(3 * e, -1), "attn.qkv.bias": b.reshape(3 * e)}
        else:
            out |= {"attn.q.weight": w[0], "attn.q.bias": b[0],
                    "attn.kv.weight": w[1:].reshape(2 * e, -1), "attn.kv.bias": b[1:].reshape(2 * e)}
            if sr > 1:
                conv, norm = self.sr[str(sr)], self.sr_norm[str(sr)]
                out |= {"attn.sr.weight": _take(conv.weight, ch, ch), "attn.sr.bias": conv.bias[ch],
                        "attn.norm.weight": norm.weight[ch], "attn.norm.bias": norm.bias[ch]}
        return out | {
            "attn.proj.weight": _take(self.proj.weight, ch, slice(0, e)), "attn.proj.bias": self.proj.bias[ch],
            "norm2.weight": self.norm2.weight[ch], "norm2.bias": self.norm2.bias[ch],
            "mlp.fc1.weight": _take(self.fc1.weight, slice(0, m), ch), "mlp.fc1.bias": self.fc1.bias[:m],
            "mlp.fc2.weight": _take(self.fc2.weight, ch, slice(0, m)), "mlp.fc2.bias": self.fc2.bias[ch],
        }


class SuperStage(nn.Module):
    """A stage at maximal widths: patch merging from C_in channels (stride k), the blocks and the
    depthwise position conv."""

    def __init__(self, C_in: int, C: int, k: int, blocks: list[SuperBlock]):
        super().__init__()
        self.k = k
        self.patch_proj = nn.Conv2d(C_in, C, k, stride=k)
        self.patch_norm = nn.LayerNorm(C, eps=INNER_EPS)
        self.blocks = nn.ModuleList(blocks)
        self.pos = nn.Conv2d(C, C, 3, padding=1, groups=C)

    def merge_weights(self, ch_in, ch) -> dict[str, torch.Tensor]:
        """Patch merging from channels `ch_in` (None: every image channel) to `ch`, keyed like
        timm's Twins PatchEmbed."""
        return {"proj.weight": _take(self.patch_proj.weight, ch, ch_in), "proj.bias": self.patch_proj.bias[ch],
                "norm.weight": self.patch_norm.weight[ch], "norm.bias": self.patch_norm.bias[ch]}

    def pos_weights(self, ch) -> dict[str, torch.Tensor]:
        return {"proj.0.weight": self.pos.weight[ch], "proj.0.bias": self.pos.bias[ch]}


class TwinsSupernet(Supernet):
    def __init__(self, space: TwinsSpace, sharing: str = "cyclic", drop_path: float = 0.0):
        super().__init__()
        self.space = space
        # Per stage and width: its channel windows (one, or two with bilateral sharing).
        self.paths = [channel_selector(st.embed_dims, st.embed_dims[-1], sharing) for st in space.stages]
        n = space.max_depth
        rates = iter([drop_path * i / max(n - 1, 1) for i in range(n)])  # over every position
        stages, c = [], space.in_chans
        for s, st in enumerate(space.stages):
            C, M = st.embed_dims[-1], max(st.mlp(e, r) for e in st.embed_dims for r in st.mlp_ratios)
            srs = tuple(r for r in st.sr_ratios if r > 1)
            blocks = [SuperBlock(C, M, srs if self._can_be_global(s, i) else (), next(rates)) for i in range(st.blocks)]
            stages.append(SuperStage(c, C, space.patch if s == 0 else 2, blocks))
            c = C
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(c, eps=LN_EPS)
        self.head = nn.Linear(c, space.num_classes)
        self.apply(partial(Twins._init_weights, self))  # timm's Twins initialisation

    def no_weight_decay(self) -> set[str]:
        """As timm's Twins: the position convs are not decayed (timm's optimizer factory asks)."""
        return {f"stages.{s}.pos.{n}" for s, stage in enumerate(self.stages) for n, _ in stage.pos.named_parameters()}

    def _can_be_global(self, s: int, i: int) -> bool:
        """Whether position i of stage s may compute GSA: some window is 1, or the block there can
        have an odd index among the stage's computing blocks (with identity shifting it is block i;
        without, i minus the identities before it)."""
        st = self.space.stages[s]
        if 1 in st.wss:
            return True
        if self.space.identity_shifting:
            return i % 2 == 1
        before = sum(1 for r in self.space.removable(s) if r < i)
        return any(j % 2 for j in range(i - before, i + 1))

    def channels(self, arch: Arch, path: int = 0) -> list:
        """The token-channel selector of every stage of `arch` on its path `path`."""
        return [self.paths[s][stage.embed][path] for s, stage in enumerate(arch.stages)]

    def _check(self, arch: Arch) -> Arch:
        """`arch` in the space's canonical form (with identity shifting: identities at each stage's
        end, the one network its encodings describe), once its layout is checked."""
        if [len(s.layers) for s in arch.stages] != [st.blocks for st in self.space.stages]:
            raise ValueError(f"the architecture's layers per stage {[len(s.layers) for s in arch.stages]} "
                             f"differ from the supernet's {[st.blocks for st in self.space.stages]}")
        return self.space.canonical(arch)

    def forward(self, x: torch.Tensor, arch: Arch | list[Arch], path: int | None = None) -> torch.Tensor:
        """Logits of `arch`: the sum over its channel paths (one unless sharing is bilateral), or
        only path number `path`. A list of k archs: one equal sub-batch of `x` through each."""
        if isinstance(arch, (list, tuple)):
            return forward_each(lambda part, a: self(part, a, path), x, arch)
        arch = self._check(arch)
        n = len(self.paths[0][arch.stages[0].embed])
        if path is not None or n == 1:
            return self.forward_path(x, arch, self.channels(arch, path or 0))
        first, last = self.channels(arch, 0), self.channels(arch, 1)  # bilateral: contiguous slices
        if first == last:  # every stage at full width: both paths are every channel, one pass is enough
            return 2 * self.forward_path(x, arch, first)
        return self.forward_path(x, arch, first) + self.forward_path(x, arch, last)

    def forward_path(self, x: torch.Tensor, arch: Arch, chs: list) -> torch.Tensor:
        """Logits of `arch` on token channels `chs` (one selector per stage)."""
        ch_in = None
        for s, (sstage, stage, ch) in enumerate(zip(self.stages, arch.stages, chs)):
            if s:
                x = to_map(x, size)
            x, size = patch_merge(x, sstage.merge_weights(ch_in, ch), sstage.k)
            active = [(b, l) for b, l in zip(sstage.blocks, stage.layers) if not l.identity]
            for j, (block, layer) in enumerate(active):
                local = is_local(stage.ws, j)
                x = block_forward(x, size, block.sub_weights(layer, ch, local, stage.sr or 1), layer, local,
                                  stage.ws or 1, stage.sr or 1, block.drop_path)
                if j == 0:
                    x = pos_conv(x, size, sstage.pos_weights(ch))
            ch_in = ch
        x = F.layer_norm(x, (x.shape[-1],), self.norm.weight[ch_in], self.norm.bias[ch_in], LN_EPS)
        return F.linear(x.mean(dim=1), _take(self.head.weight, slice(None), ch_in), self.head.bias)

    def sub_state_dict(self, arch: Arch, path: int = 0) -> dict[str, torch.Tensor]:
        """The weights of `arch`'s path `path` under the exported `TwinsNet`'s keys (= timm's
        Twins keys; active blocks of each stage renumbered)."""
        arch = self._check(arch)
        state, ch_in = {}, None
        for s, (sstage, stage, ch) in enumerate(zip(self.stages, arch.stages, self.channels(arch, path))):
            state |= {f"patch_embeds.{s}.{k}": v for k, v in sstage.merge_weights(ch_in, ch).items()}
            active = [(b, l) for b, l in zip(sstage.blocks, stage.layers) if not l.identity]
            for j, (block, layer) in enumerate(active):
                sub = block.sub_weights(layer, ch, is_local(stage.ws, j), stage.sr or 1)
                state |= {f"blocks.{s}.{j}.{k}": v for k, v in sub.items()}
            state |= {f"pos_block.{s}.{k}": v for k, v in sstage.pos_weights(ch).items()}
            ch_in = ch
        return state | {"norm.weight": self.norm.weight[ch_in], "norm.bias": self.norm.bias[ch_in],
                        "head.weight": _take(self.head.weight, slice(None), ch_in), "head.bias": self.head.bias}


@torch.no_grad()
def export(supernet: TwinsSupernet, arch: Arch, path: int = 0) -> TwinsNet:
    """A stand-alone `TwinsNet` (timm Twins blocks) carrying `arch`'s inherited weights, in the
    supernet's floating-point type and in eval mode. With prefix or cyclic sharing `export(net, arch)(x) ==
    net(x, arch)`; with bilateral sharing the supernet scores the sum of two paths and `export`
    returns one of them (0: the first channels of each stage, 1: the last), as in the vit family."""
    sp = supernet.space
    model = TwinsNet(arch, sp.img_size, sp.in_chans, sp.num_classes)
    model.to(dtype=supernet.head.weight.dtype)
    state = {k: v.detach().clone().contiguous() for k, v in supernet.sub_state_dict(arch, path).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()  # the contract: eval mode, whatever mode the supernet is in
