"""The ablation arms of each family: one definition, read by the config check, the Snakemake rules,
the CLI and the report. Torch-free (it imports only the error types and the family registry).

Each family package defines its arms (`ARMS`: name -> overrides per config section, `supernet`
or `space`) and the keys they switch (`SWITCHES`); `recipe: deit` in the supernet overrides asks
for DeiT's full supernet recipe instead of ViTAS's weak one.
"""
from __future__ import annotations

import copy

from . import families
from .errors import SpaceError

# A `recipe` override: train the supernet with DeiT's full recipe (Mixup and CutMix included, as
# DeiT trains) instead of ViTAS's weak one. The only "DeiT recipe"; `retrain.augment` defaults to
# ViTAS's retraining recipe, DeiT's without Mixup/CutMix.
DEIT_SUPERNET_RECIPE = {
    "augment": {"scale": [0.08, 1.0], "hflip": 0.5, "random_erasing": 0.25, "cutmix": 1.0, "mixup": 0.8,
                "label_smoothing": 0.1, "randaugment": "rand-m9-mstd0.5-inc1", "color_jitter": 0.4},
    "drop_path": 0.1,
}

def family_variants(family: str) -> dict[str, dict]:
    """Arm name -> overrides per section, as the family package defines them (`ARMS`)."""
    return families.get(family).ARMS


def switch_keys(family: str) -> tuple[str, ...]:
    """The config keys the family's arms switch, as recorded in health.json and the tables."""
    return tuple(families.get(family).SWITCHES)


def check_variant(family: str, name: str) -> None:
    arms = family_variants(family)
    if name not in arms:
        raise SpaceError(f"ablation: unknown {family} variant {name!r}; choose from {', '.join(arms)}")


def selected_variants(cfg: dict) -> list[str]:
    """The arms of the config's family that `ablation.variants` names (null: all of them), in
    definition order; names of other families' arms are skipped, unknown names stop here."""
    family, chosen = cfg["space"]["family"], cfg["ablation"]["variants"]
    known = {name for f in families.names() for name in family_variants(f)}
    for name in chosen or ():
        if name not in known:
            raise SpaceError(f"ablation.variants: unknown variant {name!r}; choose from "
                             f"{', '.join(sorted(known))}")
    return [v for v in family_variants(family) if chosen is None or v in chosen]


def overrides(family: str, name: str) -> dict[str, dict]:
    """A copy of arm `name`'s overrides per section, with `recipe: deit` expanded."""
    check_variant(family, name)
    over = copy.deepcopy(family_variants(family)[name])
    sn = over.get("supernet", {})
    if sn.pop("recipe", "weak") == "deit":
        sn |= copy.deepcopy(DEIT_SUPERNET_RECIPE)
    return over
