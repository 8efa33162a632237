"""The hand-designed Twins-SVT-shaped baseline of a budget, inside the search window: Twins-SVT's
shape (timm's twins_svt_small: stage widths w, 2w, 4w, 8w, heads of 32 channels, MLP 4x, LSA and
GSA alternating with the widest window, the strongest key/value sub-sampling) scaled to the
budget's MACs. Torch-free, so the Snakefile can check at parse time that every budget has one."""
from __future__ import annotations

from ...arch import Arch, Layer, Stage
from ...spaces import SpaceError, format_macs, parse_macs, widest_within
from .space import StageChoices, TwinsSpace

# Stage-0 widths tried: every integer (at Fashion-MNIST scale one channel moves the MACs by
# several per cent, so a coarser grid could miss a narrow search window).
WIDTH_STEP = 1
MAX_WIDTH = 4096


def stage_blocks(space: TwinsSpace, baseline: dict) -> list[int]:
    """Blocks per stage of the baseline: `baseline.blocks` for every stage, or one per stage."""
    blocks = baseline["blocks"]
    if isinstance(blocks, int):
        return [blocks] * len(space.stages)
    if len(blocks) != len(space.stages):
        raise SpaceError(f"space.baseline.blocks: {len(blocks)} entries for {len(space.stages)} stages; give one "
                         "per stage or a single number")
    return list(blocks)


def heads_for(width: int, head_dim: int) -> int:
    """The most heads dividing `width` whose dimension is at least `head_dim` (1 if none)."""
    return max((h for h in range(1, width // max(head_dim, 1) + 1) if width % h == 0), default=1)


def _stage(space: TwinsSpace, s: int, width: int, blocks: int, baseline: dict) -> Stage:
    """`blocks` equal blocks of `width`; padded with identity layers at the space's removable
    positions when it has more positions and enough of them (the baseline then has the space's
    encoding), else exactly `blocks` layers (countable and buildable, outside the space)."""
    st: StageChoices = space.stages[s]
    block = Layer(heads=heads_for(width, baseline["head_dim"]), qkv=width,
                  mlp=StageChoices.mlp(width, baseline["mlp_ratio"]))
    skip, removable = st.blocks - blocks, space.removable(s)
    attn = dict(ws=st.wss[-1], sr=st.sr_ratios[-1])  # SVT: the widest window, the strongest sub-sampling
    if 0 < skip <= len(removable):
        gaps = set(removable[-skip:])
        return Stage(width, tuple(Layer(block.heads, block.qkv, block.mlp, identity=i in gaps)
                                  for i in range(st.blocks)), **attn)
    return Stage(width, (block,) * blocks, **attn)


def baseline_arch(space: TwinsSpace, width: int, baseline: dict) -> Arch:
    """The Twins-SVT-shaped network of stage-0 width `width` (stage s: width x 2^s)."""
    stages = tuple(_stage(space, s, width * 2 ** s, b, baseline) for s, b in enumerate(stage_blocks(space, baseline)))
    return space.canonical(Arch(patch=space.patch, stages=stages, family=space.family))


def design_baseline(space: TwinsSpace, budget: str, baseline: dict, fraction: float = 0.0) -> Arch:
    """The widest Twins-SVT-shaped network whose MACs stay within `budget`; it must lie in the
    search window [fraction x budget, budget], so that it is compared with searched networks of
    the same size."""
    budget_macs = parse_macs(budget)
    make = lambda w: baseline_arch(space, w, baseline)
    shape = f"{stage_blocks(space, baseline)} blocks per stage"
    width = widest_within(space.macs, make, budget_macs, WIDTH_STEP, MAX_WIDTH)
    if width is None:
        raise SpaceError(f"space.baseline: even the narrowest Twins-SVT-shaped baseline (stage widths {WIDTH_STEP}, "
                         f"{2 * WIDTH_STEP}, ..., {shape}) needs {format_macs(space.macs(make(WIDTH_STEP)))} MACs, "
                         f"above the budget {budget}; lower space.baseline.blocks or raise the budget")
    arch = make(width)
    if space.macs(arch) < fraction * budget_macs:
        raise SpaceError(f"space.baseline: the widest Twins-SVT-shaped baseline within {budget} (stage-0 width "
                         f"{width}, {shape}) has {format_macs(space.macs(arch))} MACs, outside the search "
                         f"window [{format_macs(fraction * budget_macs)}, {budget}]; change space.baseline (blocks, "
                         "mlp_ratio), the budget or search.min_budget_fraction")
    return arch
