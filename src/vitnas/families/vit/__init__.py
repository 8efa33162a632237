"""ViTAS's family: a single-stage, DeiT-style ViT (the package's four pieces: `space`, `supernet`,
`model`, `baseline`). Only the space and the baseline are imported here, so this stays torch-free."""
from .baseline import design_baseline  # noqa: F401  (the family interface)
from .space import ViTSpace as Space
from .space import macs, params  # noqa: F401  (counting without a config: show-arch)

# The ablation arms (vitnas.variants): the full ViTAS method (private tokens per patch size,
# private Q/K per head count, cyclic channel sharing, identity shifting, layer-wise sampling with
# the budget-driven identity probability; weak augmentation is `supernet.augment` as configured),
# then each technique off (or swapped) in turn, in the order ViTAS adds them, then AutoFormer's
# own supernet training.
_FULL = {"private_tokens": True, "private_qk": True, "sharing": "cyclic", "identity_shifting": True,
         "sampling": "layerwise", "identity_prob": "budget"}
SWITCHES = tuple(_FULL)
IGNORES = ("warmup_epochs",  # no progressive unlocking in this family, nor ViT-ResNAS's released details
           "skip_unlock", "multi_arch_draw", "unlock_per_epoch", "resort_at_warmup_end", "patch_mixup")
_ARMS = {
    "full": _FULL,
    "no_private_tokens": _FULL | {"private_tokens": False},
    "no_private_qk": _FULL | {"private_qk": False},
    "no_cyclic": _FULL | {"sharing": "prefix"},
    "bilateral": _FULL | {"sharing": "bilateral"},  # ViTAS v1's released sharing (BCNet)
    "no_shifting": _FULL | {"identity_shifting": False},
    "no_budget_prob": _FULL | {"identity_prob": 0.5},
    "depth_sampling": _FULL | {"sampling": "depth"},  # the other sampler under identity shifting
    "no_weak_aug": _FULL | {"recipe": "deit"},
    # AutoFormer: a uniform depth whose first layers compute (what identity shifting means), uniform
    # width choices, first-k (prefix) weight entanglement, one class token and patch embedding,
    # shared Q/K.
    "autoformer": {"private_tokens": False, "private_qk": False, "sharing": "prefix",
                   "identity_shifting": True, "sampling": "depth", "identity_prob": 0.5},
}
ARMS = {name: {"supernet": over} for name, over in _ARMS.items()}
# The claims table's ablation rows: arm -> (claim, whether the search result is compared too).
# depth_sampling is a design choice, not a claim of the paper.
_EACH = "each technique helps"
CLAIMS = {"autoformer": ("full ViTAS supernet ranks better than AutoFormer-style training", False)} | {
    arm: (_EACH, False) for arm in ("no_private_tokens", "no_private_qk", "no_cyclic", "no_shifting",
                                    "no_budget_prob", "no_weak_aug", "bilateral")}
BASELINE_NAME = "DeiT-style"


def build_supernet(space: Space, sn: dict):
    """The supernet with the `supernet` section's switches."""
    from .supernet import ViTSupernet

    return ViTSupernet(space, sharing=sn["sharing"], private_qk=sn["private_qk"], drop_path=sn["drop_path"],
                       private_tokens=sn["private_tokens"])


def export(net, arch, path: int = 0):
    from .supernet import export

    return export(net, arch, path)


def build_model(arch, space: Space, drop_path: float = 0.0):
    """The stand-alone network of `arch`, initialised from the current torch seed."""
    from .model import ViT

    return ViT(arch, space.img_size, space.in_chans, space.num_classes, drop_path=drop_path)
