"""A tests-only fourth family: a tiny single-path CNN space (a few inverted-residual layers, each an
identity or one of a few hidden widths, one weight set per choice per layer, BatchNorm), written
only against the family contract (`vitnas.families.contract`). Registered in a fixture, it passes
the same contract test as the real families: one package is all a family needs.

A layer is `Layer(heads=1, qkv=0, mlp=hidden)`: no attention, `mlp` the block's hidden width.
Torch-free here, as every family's top level."""
from vitnas.errors import SpaceError
from vitnas.spaces import format_macs, parse_macs

from .space import ToySpace as Space
from .space import macs, params

SWITCHES = ()
IGNORES = ("sharing", "private_tokens", "private_qk", "identity_shifting", "sampling", "warmup_epochs",
           "skip_unlock", "multi_arch_draw", "unlock_per_epoch", "resort_at_warmup_end", "patch_mixup")
ARMS = {"full": {}}
CLAIMS = {}
BASELINE_NAME = "uniform CNN"


def design_baseline(space: Space, budget: str, baseline: dict, fraction: float):
    """Every layer computing at the widest hidden width whose network stays within `budget`."""
    fits = [a for a in map(space.uniform, space.widths) if space.macs(a) <= parse_macs(budget)]
    if not fits or space.macs(fits[-1]) < fraction * parse_macs(budget):
        raise SpaceError(f"space.baseline: no uniform network lies in the window of {budget} "
                         f"(they cost {', '.join(format_macs(space.macs(space.uniform(w))) for w in space.widths)})")
    return fits[-1]


def build_supernet(space: Space, sn: dict):
    from .nets import ToySupernet

    return ToySupernet(space)


def export(net, arch, path: int = 0):
    from .nets import export

    return export(net, arch, path)


def build_model(arch, space: Space, drop_path: float = 0.0):
    from .nets import ToyNet

    return ToyNet(arch, space.img_size, space.in_chans, space.num_classes)
