"""Search-space families, by name: each is a package with the same four pieces.

- `Space` (torch-free): sample, mutate, crossover, canonical key, MACs per named convention, params;
- `build_supernet(space, supernet_cfg)`: the weight-sharing supernet, with `forward(x, arch)`,
  `forward(x, archs)` (one sub-batch per arch in one pass) and `sub_state_dict(arch)`;
  `export(net, arch)`: the stand-alone model carrying the inherited weights;
- `build_model(arch, space, drop_path)`: the stand-alone network from timm blocks, with
  `forward_features` / `forward_intermediates`;
- `design_baseline(space, budget, baseline_cfg, fraction)`: the hand-designed network of a budget;
- `macs(arch, img_size, in_chans, num_classes, convention)` and `params(...)`: counting without a
  config (`Space.conventions` names the conventions);
- `ARMS` and `SWITCHES`: its ablation arms (see vitnas.variants).

Nothing outside a family's package says its name; everything goes through `get`.
"""
from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("vit", "resnas", "twins", "macro")


def get(name: str) -> ModuleType:
    if name not in NAMES:
        from ..spaces import SpaceError

        raise SpaceError(f"space.family: unknown family {name!r}; choose one of {', '.join(NAMES)}")
    from .contract import check

    return check(importlib.import_module(f"{__name__}.{name}"))


def count(arch, img_size: int, in_chans: int, num_classes: int, convention: str = "timm") -> dict:
    """{"family", "macs", "params", "convention"} of `arch` for inputs of that size and classes."""
    family = get(arch.family)
    if convention not in family.Space.conventions:
        from ..spaces import SpaceError

        raise SpaceError(f"--convention {convention!r} is not known for the {arch.family} family; choose "
                         f"one of {', '.join(family.Space.conventions)}")
    return {"family": arch.family, "macs": family.macs(arch, img_size, in_chans, num_classes, convention),
            "params": family.params(arch, img_size, in_chans, num_classes), "convention": convention}


def of(space) -> ModuleType:
    """The family package of a space (or an architecture)."""
    return get(space.family)


def design_baseline(cfg: dict, space, budget: str):
    """The hand-designed network of `budget`, from `space.baseline`, inside the search window."""
    return of(space).design_baseline(space, budget, cfg["space"]["baseline"], cfg["search"]["min_budget_fraction"])


def build_supernet(cfg: dict, space):
    return of(space).build_supernet(space, cfg["supernet"])


def build_model(arch, space, drop_path: float = 0.0):
    """The stand-alone network of `arch` (for `space`'s data: image size, channels, classes)."""
    if arch.family != space.family:
        from ..spaces import SpaceError

        raise SpaceError(f"a {arch.family} architecture cannot be built in the {space.family} space; "
                         "check the config's space.family")
    return of(space).build_model(arch, space, drop_path)


def export(net, arch, path: int = 0):
    """The stand-alone model of `arch` carrying the supernet's inherited weights."""
    return of(net.space).export(net, arch, path)
