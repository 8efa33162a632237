"""ViTAS's Twins-based family: a hierarchical space of Twins-SVT / Twins-PCPVT networks (the
package's four pieces: `space`, `supernet`, `model`, `baseline`). Only the space and the baseline
are imported here, so this stays torch-free."""
from .baseline import design_baseline
from .space import TwinsSpace as Space
from .space import macs, params  # counting without a config: show-arch

__all__ = ["ARMS", "BASELINE_NAME", "CLAIMS", "IGNORES", "SWITCHES", "Space", "build_model", "build_supernet", "design_baseline", "export", "macs",
           "params"]

# The ablation arms (vitnas.variants): the ViTAS techniques that apply to Twins (cyclic channel
# sharing, identity shifting, layer-wise sampling with the budget-driven identity probability; weak
# augmentation is `supernet.augment` as configured), then each off in turn. Private class tokens
# and private Q/K do not apply (see config/README.md): `private_tokens` and `private_qk` are ignored.
_FULL = {"sharing": "cyclic", "identity_shifting": True, "sampling": "layerwise", "identity_prob": "budget"}
SWITCHES = tuple(_FULL)
IGNORES = ("private_tokens", "private_qk", "warmup_epochs",  # and ViT-ResNAS's released details:
           "skip_unlock", "multi_arch_draw", "unlock_per_epoch", "resort_at_warmup_end", "patch_mixup")
_ARMS = {
    "full": _FULL,
    "no_cyclic": _FULL | {"sharing": "prefix"},
    "no_shifting": _FULL | {"identity_shifting": False},
    "no_budget_prob": _FULL | {"identity_prob": 0.5},
}
ARMS = {name: {"supernet": over} for name, over in _ARMS.items()}
# The claims table's ablation rows: arm -> (claim, whether the search result is compared too).
CLAIMS = {arm: ("each technique helps", False) for arm in ("no_cyclic", "no_shifting", "no_budget_prob")}
BASELINE_NAME = "Twins-SVT-shaped"


def build_supernet(space: Space, sn: dict):
    """The supernet with the `supernet` section's sharing and drop_path (identity shifting and
    sampling act through the space; archs_per_batch in training)."""
    from .supernet import TwinsSupernet

    return TwinsSupernet(space, sharing=sn["sharing"], drop_path=sn["drop_path"])


def export(net, arch, path: int = 0):
    from .supernet import export

    return export(net, arch, path)


def build_model(arch, space: Space, drop_path: float = 0.0):
    """The stand-alone network of `arch`, initialised from the current torch seed."""
    from .model import TwinsNet

    return TwinsNet(arch, space.img_size, space.in_chans, space.num_classes, drop_path=drop_path)


def latency_part(kind: str, *args):
    """The module of one latency part of the space (vitnas.latency_table), built by the model."""
    from .model import latency_part

    return latency_part(kind, *args)
