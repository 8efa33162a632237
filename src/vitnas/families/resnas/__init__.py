"""ViT-ResNAS's family: a multi-stage ViT with a conv stem and residual spatial reduction (the
package's four pieces: `space`, `supernet`, `model`, `baseline`). Only the space and the baseline
are imported here, so this stays torch-free."""
from .baseline import design_baseline
from .space import ResNASSpace as Space
from .space import macs, params  # counting without a config: show-arch

__all__ = ["ARMS", "BASELINE_NAME", "CLAIMS", "IGNORES", "SWITCHES", "Space", "build_model", "build_supernet", "design_baseline", "export", "macs",
           "params"]

# The ablation arms (vitnas.variants): the full ViT-ResNAS method as configured (residual spatial
# reduction, several sub-networks per batch, progressive unlocking with re-sorting), then each
# technique off in turn. no_unlocking opens every choice from the first step, the skip too
# (supernet.skip_unlock), so with the released switches it compares against the released schedule.
SWITCHES = ("archs_per_batch", "warmup_epochs")
# One channel path per width, positions fixed, one class token and patch embedding, shared Q/K.
IGNORES = ("sharing", "private_tokens", "private_qk", "identity_shifting")
ARMS = {
    "full": {},
    "plain_sr": {"space": {"residual": False}},
    "one_arch": {"supernet": {"archs_per_batch": 1}},
    "no_unlocking": {"supernet": {"warmup_epochs": 0}},
}
# The claims table's ablation rows: arm -> (claim, whether the search result is compared too).
CLAIMS = {
    "plain_sr": ("residual beats plain spatial reduction at equal MACs", True),
    "one_arch": ("k architectures per step beat one per step at equal steps", True),
    "no_unlocking": ("progressive unlocking with re-sorting helps", False),
}
BASELINE_NAME = "ViT-Res-Tiny-shaped"


def build_supernet(space: Space, sn: dict):
    """The supernet of `space` (the `supernet` section's drop_path, patch_mixup's patch head and
    resort_at_warmup_end; archs_per_batch and warmup_epochs act in training, not in the modules)."""
    from .supernet import ResNASSupernet

    return ResNASSupernet(space, drop_path=sn["drop_path"], patch_head=sn["patch_mixup"],
                          resort_at_warmup_end=sn["resort_at_warmup_end"])


def export(net, arch, path: int = 0):
    from .supernet import export

    return export(net, arch, path)


def build_model(arch, space: Space, drop_path: float = 0.0, patch_head: bool = False):
    """The stand-alone network of `arch`, initialised from the current torch seed; `patch_head`:
    with retrain.patch_mixup's patch head (training only, see `ResNASViT.drop_patch_head`)."""
    from .model import ResNASViT

    return ResNASViT(arch, space.img_size, space.in_chans, space.num_classes, residual=space.residual,
                     drop_path=drop_path, patch_head=patch_head)
