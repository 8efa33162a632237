"""Search-space families, by name: the registry. What a family package provides is written down
in `vitnas.families.contract` (`Family`, `FamilySpace`, `Model`, the optional hooks and the steps
to add a family); `get` checks a package against it when it loads one. Each family also ships
`space.schema.yaml` beside its `__init__.py`: the JSON Schema of its space section (keys,
defaults), read by `vitnas.config` without importing the package.

Adding a family: write the package `families/<name>/` and add its name to `_PACKAGES` below;
nothing else outside the package changes (`register` does the same at run time, for tests).
Nothing outside a family's package says its name; everything goes through `get`. `names()` lists
the registered families. Torch-free at import: a package is imported only when asked for.
"""
from __future__ import annotations

import copy
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

import yaml

from ..errors import SpaceError

SCHEMA_FILE = "space.schema.yaml"
# name -> the package (an import path, or the module itself once `register`ed as one).
_PACKAGES: dict[str, str | ModuleType] = {name: f"{__name__}.{name}" for name in ("vit", "resnas", "twins", "macro")}
_SCHEMAS: dict[str, dict] = {}  # name -> its space schema, read once


def names() -> tuple[str, ...]:
    """The registered families, in registration order."""
    return tuple(_PACKAGES)


def register(name: str, package: str | ModuleType, space_schema: dict | None = None) -> None:
    """Add (or replace) family `name`: its package (module or import path) and its space schema
    (default: the package's `space.schema.yaml`)."""
    _PACKAGES[name] = package
    _SCHEMAS.pop(name, None)
    if space_schema is not None:
        _SCHEMAS[name] = copy.deepcopy(space_schema)


def _unknown(name: str) -> SpaceError:
    return SpaceError(f"space.family: unknown family {name!r}; choose one of {', '.join(names())}")


def get(name: str) -> ModuleType:
    if name not in _PACKAGES:
        raise _unknown(name)
    package = _PACKAGES[name]
    from .contract import check  # a package lacking a piece of the contract stops here, naming it

    return check(package if isinstance(package, ModuleType) else importlib.import_module(package))


def _package_dir(package: str | ModuleType) -> Path:
    """The folder of a package, found without importing it (its parents may be imported)."""
    if isinstance(package, ModuleType):
        return Path(package.__file__).parent
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SpaceError(f"families: no package {package!r}; register a family's package")
    return Path(next(iter(spec.submodule_search_locations)))


def space_schema(name: str) -> dict:
    """The JSON Schema of family `name`'s space section (its own keys and their defaults)."""
    if name not in _PACKAGES:
        raise _unknown(name)
    if name not in _SCHEMAS:
        path = _package_dir(_PACKAGES[name]) / SCHEMA_FILE
        if not path.is_file():
            raise SpaceError(f"families: the {name} family has no {SCHEMA_FILE}; write one beside its __init__.py")
        with open(path) as f:
            _SCHEMAS[name] = yaml.safe_load(f)
    return _SCHEMAS[name]


def build_space(cfg: dict):
    """The space of `cfg`'s `space` section, built by its family."""
    return get(cfg["space"]["family"]).Space.from_config(cfg)


def count(arch, img_size: int, in_chans: int, num_classes: int, convention: str = "timm") -> dict:
    """{"family", "macs", "params", "convention"} of `arch` for inputs of that size and classes."""
    family = get(arch.family)
    if convention not in family.Space.conventions:
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


def build_model(arch, space, drop_path: float = 0.0, patch_head: bool = False):
    """The stand-alone network of `arch` (for `space`'s data: image size, channels, classes);
    `patch_head`: with a patch head for patch-level mixup (retrain.patch_mixup), in the families
    that read supernet.patch_mixup only."""
    if arch.family != space.family:
        raise SpaceError(f"a {arch.family} architecture cannot be built in the {space.family} space; "
                         "check the config's space.family")
    family = of(space)
    if not patch_head:  # the other families' build_model takes no patch_head
        return family.build_model(arch, space, drop_path)
    if "patch_mixup" in family.IGNORES:
        raise SpaceError(f"the {space.family} family has no patch head; switch retrain.patch_mixup off")
    return family.build_model(arch, space, drop_path, patch_head=True)


def export(net, arch, path: int = 0):
    """The stand-alone model of `arch` carrying the supernet's inherited weights."""
    return of(net.space).export(net, arch, path)


def latency_part(family: str, kind: str, *args):
    """The module of one latency part (`LatencyBlock.build` of the twins and macro spaces), built by
    the family's model (its package's `latency_part`): a space module, which its model imports,
    reaches the model only through here."""
    return get(family).latency_part(kind, *args)
