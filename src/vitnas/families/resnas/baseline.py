"""The hand-designed ViT-Res baseline of a budget, inside the search window: ViT-Res-Tiny's shape
(the released reference_net/tiny.sh: stage widths w, 2w, 4w, four blocks per stage, heads of 64
channels, MLP 4x) scaled to the budget's MACs. Torch-free, so the Snakefile can check at parse time
that every budget has one."""
from __future__ import annotations

from ...arch import Arch, Layer, Stage
from ...spaces import SpaceError, format_macs, parse_macs, widest_within
from .space import ResNASSpace, StageChoices

# Stage-0 widths tried: every integer. At Fashion-MNIST scale (widths near 16-32) one more channel
# already moves the MACs by about 10 %, and a step of 8 by 30-100 %, so a coarser grid could not
# reach ViT-ResNAS's 2.5 % search window [0.975 C, C] at all.
WIDTH_STEP = 1
MAX_WIDTH = 4096


def _stage(st: StageChoices, width: int, blocks: int, mlp_ratio: float) -> Stage:
    """`blocks` equal blocks of `width`; padded with identity layers to the space's layout when it
    has more positions and enough of them are removable (the baseline then has the space's
    encoding), else exactly `blocks` layers (countable and buildable, outside the space)."""
    heads = max(width // st.head_dim, 1)
    block = Layer(heads=heads, qkv=heads * st.head_dim, mlp=round(mlp_ratio * width))
    skip = st.blocks - blocks
    if 0 < skip <= len(st.removable):
        gaps = set(st.removable[-skip:])  # the last removable positions are skipped
        return Stage(width, tuple(Layer(block.heads, block.qkv, block.mlp, identity=i in gaps)
                                  for i in range(st.blocks)))
    return Stage(width, (block,) * blocks)


def baseline_arch(space: ResNASSpace, width: int, baseline: dict) -> Arch:
    """The ViT-Res-shaped network of stage-0 width `width` (stage s: width x 2^s)."""
    stages = tuple(_stage(st, width * 2 ** s, baseline["blocks"], baseline["mlp_ratio"])
                   for s, st in enumerate(space.stages))
    return Arch(patch=space.patch, stages=stages, family=space.family, stem=space.stem_channels)


def design_baseline(space: ResNASSpace, budget: str, baseline: dict, fraction: float = 0.0) -> Arch:
    """The widest ViT-Res-shaped network whose MACs stay within `budget`; it must lie in the
    search window [fraction x budget, budget], so that it is compared with searched networks of
    the same size."""
    budget_macs = parse_macs(budget)
    make = lambda w: baseline_arch(space, w, baseline)
    width = widest_within(space.macs, make, budget_macs, WIDTH_STEP, MAX_WIDTH)
    if width is None:
        raise SpaceError(f"space.baseline: even the narrowest ViT-Res baseline (stage widths {WIDTH_STEP}, "
                         f"{2 * WIDTH_STEP}, ..., {baseline['blocks']} blocks per stage) needs "
                         f"{format_macs(space.macs(make(WIDTH_STEP)))} MACs, above the budget {budget}; lower "
                         "space.baseline.blocks or raise the budget")
    arch = make(width)
    if space.macs(arch) < fraction * budget_macs:
        raise SpaceError(f"space.baseline: the widest ViT-Res baseline within {budget} (stage-0 width "
                         f"{width}, {baseline['blocks']} blocks per stage) has "
                         f"{format_macs(space.macs(arch))} MACs, outside the search window "
                         f"[{format_macs(fraction * budget_macs)}, {budget}]; change space.baseline (blocks, "
                         "mlp_ratio), the budget or search.min_budget_fraction")
    return arch
