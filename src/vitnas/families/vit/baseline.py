"""The hand-designed DeiT-style baseline of a budget, inside the search window. Torch-free, so the
Snakefile can check at parse time that every budget has one."""
from __future__ import annotations

from ...arch import Arch
from ...spaces import SpaceError, format_macs, parse_macs
from .space import ViTSpace


def design_baseline(space: ViTSpace, budget: str, baseline: dict, fraction: float = 0.0) -> Arch:
    """The widest DeiT-style network (uniform blocks, QKV width = embedding, MLP = ratio x
    embedding, `heads` heads) whose MACs stay within `budget`; it must lie in the search window
    [fraction x budget, budget], so that it is compared with searched networks of the same size."""
    budget_macs = parse_macs(budget)
    h, depth, patch = baseline["heads"], baseline["depth"], baseline["patch"]
    if space.img_size % patch:
        raise SpaceError(f"space.baseline.patch: {patch} does not divide the image size {space.img_size}")
    make = lambda e: Arch.uniform(patch, e, depth, h, e, round(baseline["mlp_ratio"] * e), family=space.family)
    widths = [e for e in range(h, 4097, h) if space.macs(make(e)) <= budget_macs]
    if not widths:
        raise SpaceError(f"space.baseline: even the narrowest DeiT-style baseline ({h} channels, depth "
                         f"{depth}, patch {patch}) needs {format_macs(space.macs(make(h)))} MACs, above "
                         f"the budget {budget}; lower space.baseline.depth or raise the budget")
    arch = make(widths[-1])
    if space.macs(arch) < fraction * budget_macs:
        raise SpaceError(f"space.baseline: the widest DeiT-style baseline within {budget} (embedding "
                         f"{arch.embed}, depth {depth}) has {format_macs(space.macs(arch))} MACs, outside the "
                         f"search window [{format_macs(fraction * budget_macs)}, {budget}]; change "
                         "space.baseline (depth, heads, mlp_ratio) or search.min_budget_fraction")
    return arch
