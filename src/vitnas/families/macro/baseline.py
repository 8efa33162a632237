"""The hand-designed macro baseline of a budget: a uniform MobileNetV2-style network, every
computing block the same op (one of `space.baseline.ops`), with as many blocks as the search
window allows (then the most MACs; a projection is not a block). The space's networks are few
and coarse at the low end, so the rule picks from every uniform network rather than from a
one-parameter ladder, which would miss most 10 % windows. Torch-free."""
from __future__ import annotations

import itertools

from ...arch import Arch
from ...spaces import SpaceError, format_macs, parse_macs
from .space import BLOCKS, STAGE_LAYERS, MacroSpace, bench_key, from_ops


def uniform_networks(space: MacroSpace, ops) -> list[Arch]:
    """Every canonical network whose blocks are all one op of `ops` (projections elsewhere)."""
    nets = {space.canonical(from_ops(op if on else "id" for on in mask))
            for op in ops for mask in itertools.product((False, True), repeat=sum(STAGE_LAYERS))}
    return sorted(nets, key=bench_key)


def design_baseline(space: MacroSpace, budget: str, baseline: dict, fraction: float = 0.0) -> Arch:
    """The uniform network with the most blocks and MACs in [fraction x budget, budget], then the
    one with the most MACs; a SpaceError naming space.baseline if none lies there."""
    hi = parse_macs(budget)
    lo = fraction * hi
    nets = uniform_networks(space, baseline["ops"])
    fits = [a for a in nets if lo <= space.macs(a) <= hi]
    if not fits:
        below = [space.macs(a) for a in nets if space.macs(a) < lo]
        nearest = f"; the largest below it has {format_macs(max(below))} MACs" if below else ""
        raise SpaceError(f"space.baseline: no uniform network of {', '.join(baseline['ops'])} lies in the "
                         f"search window [{format_macs(lo)}, {budget}]{nearest}; change space.baseline.ops, "
                         "the budget or search.min_budget_fraction")
    return max(fits, key=lambda a: (sum(l.op in BLOCKS for l in a.blocks), space.macs(a)))
