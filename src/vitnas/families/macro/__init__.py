"""NAS-Bench-Macro's family: the benchmark's CNN space on CIFAR-10 (8 layers, each identity or a
MobileNetV2 block, in the released skeleton), so that the search machinery can be checked against
6,561 networks trained alone (the package's four pieces: `space`, `supernet`, `model`,
`baseline`). Only the space and the baseline are imported here, so this stays torch-free."""
from .baseline import design_baseline
from .space import MacroSpace as Space
from .space import macs, params  # counting without a config: show-arch

__all__ = ["ARMS", "BASELINE_NAME", "CLAIMS", "IGNORES", "SWITCHES", "Space", "build_model", "build_supernet",
           "design_baseline", "export", "macs", "params"]

# The ablation arms (vitnas.variants): the ViTAS techniques that apply to a single-path CNN
# supernet (identity shifting, layer-wise sampling with the budget-driven identity probability),
# then each off in turn; no_budget_prob samples uniformly (identity 1/3: every benchmark network
# equally likely), the usual single-path baseline. The ViT-only switches are not read, and
# supernet.sampling: depth is refused when the space is built.
_FULL = {"identity_shifting": True, "identity_prob": "budget"}
SWITCHES = tuple(_FULL)
IGNORES = ("sharing", "private_tokens", "private_qk", "warmup_epochs",  # ViT techniques, and ViT-ResNAS's released details
           "skip_unlock", "multi_arch_draw", "unlock_per_epoch", "resort_at_warmup_end", "patch_mixup")
UNIFORM = 1 / 3
_ARMS = {
    "full": _FULL,
    "no_shifting": _FULL | {"identity_shifting": False},
    "no_budget_prob": _FULL | {"identity_prob": UNIFORM},
}
ARMS = {name: {"supernet": over} for name, over in _ARMS.items()}
# The claims table's ablation rows: arm -> (claim, whether the search result is compared too).
CLAIMS = {arm: ("each technique helps", False) for arm in ("no_shifting", "no_budget_prob")}
BASELINE_NAME = "uniform MobileNetV2"


def build_supernet(space: Space, sn: dict):
    """The single-path supernet with the `supernet` section's drop_path (identity shifting and the
    identity probability act through the space and the sampler; archs_per_batch in training)."""
    from .supernet import MacroSupernet

    return MacroSupernet(space, drop_path=sn["drop_path"])


def export(net, arch, path: int = 0):
    from .supernet import export

    return export(net, arch, path)


def build_model(arch, space: Space, drop_path: float = 0.0):
    """The stand-alone network of `arch`, initialised from the current torch seed."""
    from .model import MacroNet

    return MacroNet(arch, space.img_size, space.in_chans, space.num_classes, drop_path=drop_path)


def latency_part(kind: str, *args):
    """The module of one latency part of the space (vitnas.latency_table), built by the model."""
    from .model import latency_part

    return latency_part(kind, *args)
