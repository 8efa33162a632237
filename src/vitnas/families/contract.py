"""The family contract: everything a search-space family provides, in one place.

A family is one package, `vitnas.families.<name>`, whose top level is torch-free (the Snakefile
and the config checks import it) and provides the module-level names of `Family`. Its `Space`
subclasses `vitnas.spaces.Space` (or `StagedSpace`) and provides the members of `FamilySpace`;
its supernet subclasses `vitnas.supernet.base.Supernet`; its stand-alone model provides the
members of `Model` (timm's forward interface). Optional features are hooks with do-nothing
defaults on those base classes, so callers never ask whether a family has them:

- `Space.unlocked(epoch, warmup_epochs)`: the space progressive unlocking samples from (default:
  the whole space);
- `Space.sample_many(rngs, identity_prob, max_depth)`: the k sub-networks of one training step,
  one generator each (default: each drawn alone by `sample`; ViT-ResNAS deals them balanced with
  supernet.multi_arch_draw: balanced);
- `Space.sample_shrunk(rng, lo, hi)`: a network in [lo, hi] drawn as ViT-ResNAS's released search
  draws its initial population, for search.init: shrink (default: a SpaceError, no such draw);
- `Space.latency_blocks(arch)` / `Space.all_latency_blocks()`: the parts (`spaces.LatencyBlock`:
  a shape key, a factory for the real stand-alone module, its input shape) whose timed sum
  predicts a network's latency, and every part of the space, for search.constraint: latency
  (vitnas.latency_table; default: none, and the config check refuses the constraint in one line;
  all four registered families have them: vit, resnas, twins, macro). A space module may not
  import its model (the model imports the space): a factory that needs the model goes through the
  registry (`families.latency_part(family, kind, ...)` calls the package's `latency_part`, as twins
  and macro do);
- `Supernet.on_epoch_start(epoch, optimizer, warmup_epochs)`: called before each training epoch
  (default: nothing; ViT-ResNAS re-sorts its units there during warm-up);
- `Supernet.patch_grid`: the side of the token grid a patch head predicts, for
  supernet.patch_mixup (default None: no patch head; ViT-ResNAS's last stage).
- `build_model(arch, space, drop_path, patch_head=True)`: a family that reads supernet.patch_mixup
  (not in its `IGNORES`) also builds its stand-alone model with a patch head, for
  retrain.patch_mixup: the model's `patch_grid`, (logits, patch logits) from `forward` in training
  mode, and `drop_patch_head()` for the inference model (other families are never asked: the
  registry leaves the argument out and the config check refuses the switch).

Nothing in the required part assumes a ViT: an architecture is an `Arch` of stages of layers, a
layer computes something or is an identity, and what a layer's fields mean is the family's
(they are named after a ViT's, heads, qkv and mlp: the tests' toy CNN family keeps its blocks'
hidden width in `mlp`). A layer whose operation those fields cannot name says it in `Layer.op`
(the macro family's "ir_3x3_t3", "proj", ...): keyed and serialised only where set. A layer that
changes stride or width is never an identity (`Arch.shifted` moves identities, and would move it):
give it a computing op instead, as the macro family's projection.

Adding a family (one package plus one name):

1. Write `src/vitnas/families/<name>/` with a torch-free `__init__.py` that provides every name of
   `Family` (import the supernet and the model lazily, inside `build_supernet`, `export` and
   `build_model`).
2. Give it a `Space` (subclass of `vitnas.spaces.Space`) with every member of `FamilySpace`, a
   supernet (subclass of `vitnas.supernet.base.Supernet`) and a stand-alone model with every
   member of `Model`; override the optional hooks only where the family has the feature.
3. Declare its ablation arms (`ARMS`), the keys they switch (`SWITCHES`), the `supernet` keys it
   does not read (`IGNORES`), its claims (`CLAIMS`) and its baseline's name (`BASELINE_NAME`).
4. Add its name to the registry, `vitnas.families` (with its `space` section's schema, see
   config/README.md).
5. Run `tests/test_family_contract.py`: it takes every family of the registry through the same
   checks (export equivalence, traced MACs == analytic MACs, parameters, sample / mutate /
   crossover validity, the timm forward interface, the declared switches); family-specific checks
   (published counts, switches) go in a test file of the family's own.

`check(module)` tells which piece a package lacks; the registry runs it when it loads a family.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..arch import Arch


class Family(Protocol):
    """The module-level names of a family package."""

    Space: type
    """The family's space: a `vitnas.spaces.Space` subclass with every member of `FamilySpace`."""

    ARMS: dict[str, dict[str, dict]]
    """Ablation arms, in order, the first the full method: name -> overrides per config section
    (`supernet` or `space`); `recipe: deit` in `supernet` asks for DeiT's supernet recipe."""

    SWITCHES: tuple[str, ...]
    """The `supernet` keys the arms switch, as recorded in health.json and the tables."""

    IGNORES: tuple[str, ...]
    """The `supernet` keys this family does not read (switches of other families' methods)."""

    CLAIMS: dict[str, tuple[str, bool]]
    """The claims table's ablation rows: arm -> (the claim it tests, whether the search result is
    compared too, not only the supernet's ranking)."""

    BASELINE_NAME: str
    """The hand-designed baseline's name in the tables (e.g. "DeiT-style")."""

    def build_supernet(self, space: Any, sn: dict) -> Any:
        """The weight-sharing supernet of `space` (a `vitnas.supernet.base.Supernet`) with the
        `supernet` config section's switches, initialised from the current torch seed."""

    def export(self, net: Any, arch: "Arch", path: int = 0) -> Any:
        """The stand-alone model of `arch` carrying `net`'s inherited weights, in `net`'s floating
        point type and in eval mode (BatchNorm on its running statistics, no drop-path):
        `export(net, arch)(x) == net.eval()(x, arch)` (`path` picks one channel path where a
        supernet scores a width by several). Call `.train()` on it to fine-tune."""

    def build_model(self, arch: "Arch", space: Any, drop_path: float = 0.0) -> Any:
        """The stand-alone network of `arch` for `space`'s data (a `Model`), initialised from the
        current torch seed."""

    def design_baseline(self, space: Any, budget: str, baseline: dict, fraction: float) -> "Arch":
        """The hand-designed network of `budget` (space.baseline's settings), inside the search
        window [fraction x budget, budget]; a SpaceError naming space.baseline otherwise."""

    def macs(self, arch: "Arch", img_size: int, in_chans: int, num_classes: int, convention: str = "timm") -> int:
        """MACs of `arch` without a config, under a convention of `Space.conventions`."""

    def params(self, arch: "Arch", img_size: int, in_chans: int, num_classes: int) -> int:
        """Parameters of `arch`'s stand-alone model."""


class FamilySpace(Protocol):
    """What a family's `Space` provides beyond `vitnas.spaces.Space`'s shared code. Torch-free."""

    family: str
    """The family's name, as in `NAMES` and `Arch.family`."""
    img_size: int
    in_chans: int
    num_classes: int
    identity_shifting: bool
    """Whether encodings that differ only in where identity layers sit are one network."""
    sampling: str
    """"layerwise" (each removable layer an identity with a probability) or "depth"."""
    conventions: tuple[str, ...]
    """The MACs conventions `macs` knows, "timm" first (see vitnas.spaces)."""
    min_depth: int
    """Computing layers of the shallowest network."""

    @classmethod
    def from_config(cls, cfg: dict) -> "FamilySpace":
        """The space of a validated config's `space` and `data` sections."""

    def contains(self, arch: "Arch") -> bool:
        """Whether `arch` is a network of this space."""

    def sample(self, rng: random.Random, identity_prob: float = 0.5, max_depth: int | None = None) -> "Arch":
        """A random network, drawn from `rng` only."""

    def mutate(self, arch: "Arch", rng: random.Random, prob: float) -> "Arch":
        """`arch` with each gene resampled with probability `prob`."""

    def crossover(self, a: "Arch", b: "Arch", rng: random.Random, kind: str | None = None) -> "Arch":
        """A child of `a` and `b` (the shared `Space.crossover` works from `_genes` / `_from_genes`)."""

    def macs(self, arch: "Arch", convention: str = "timm") -> int:
        """Analytic MACs: under "timm", what torch.utils.flop_counter measures / 2 on the model."""

    def params(self, arch: "Arch") -> int:
        """Parameters of the stand-alone model."""

    def smallest(self) -> "Arch":
        """The network with the fewest MACs."""

    def largest(self) -> "Arch":
        """The network with the most MACs."""

    def deepest_in_window(self, lo: float, hi: float) -> int:
        """The depth of the deepest network whose MACs can lie in [lo, hi] (0 if none can)."""

    def layer_slots(self) -> list[str]:
        """A name per supernet layer, in order (as `usage` reports them)."""

    def usable_layers(self, lo: float, hi: float) -> list[int]:
        """The layer slots a network with MACs in [lo, hi] can use."""

    def choices(self) -> dict[str, tuple]:
        """Every choice dimension and its values (for usage histograms)."""

    def arch_choices(self, arch: "Arch") -> Any:
        """(dimension, value, per-layer?) of every choice `arch` makes."""


class Model(Protocol):
    """The stand-alone network (timm's forward interface; detection reads its feature maps)."""

    in_chans: int
    head: Any
    """The classifier, replaceable by nn.Identity (detection drops it)."""
    feature_info: list[dict]
    """timm's feature description: per feature map {"num_chs", "reduction", "module"}."""

    def forward(self, x: Any) -> Any:
        """Logits [B, num_classes] = forward_head(forward_features(x))."""

    def forward_features(self, x: Any) -> Any:
        """The final features, before the head."""

    def forward_head(self, x: Any) -> Any:
        """Logits of `forward_features`' output."""

    def forward_intermediates(self, x: Any, indices: int | list[int] | None = None, norm: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False) -> Any:
        """Feature maps [B, num_chs, ceil(H / reduction), ceil(W / reduction)] after the feature
        points `indices` (an int n: the last n; default: the last), with the final features
        (those of `forward_features`) unless `intermediates_only`."""


def members(protocol: type) -> list[str]:
    """The names a protocol declares, in order."""
    names = [n for n in (*protocol.__annotations__, *vars(protocol)) if not n.startswith("_")]
    return list(dict.fromkeys(names))


def missing(obj: Any, protocol: type) -> list[str]:
    """The members of `protocol` that `obj` (a module, a class or an instance) lacks; a class
    has the fields it annotates (dataclass fields without a default exist on instances only)."""
    fields = {n for k in getattr(obj, "__mro__", ()) for n in vars(k).get("__annotations__", {})}
    return [n for n in members(protocol) if not hasattr(obj, n) and n not in fields]


def _lacks(what: str, piece: str, protocol: type) -> TypeError:
    about = (getattr(vars(protocol).get(piece), "__doc__", None) or "").strip().split("\n")[0]
    return TypeError(f"{what} lacks {piece}{f' ({about})' if about else ''}; see "
                     f"vitnas.families.contract.{protocol.__name__}")


def check(module: Any) -> Any:
    """`module` if it provides the whole `Family` contract (torch-free: the supernet and the model
    are checked where they are built); a TypeError naming the first missing piece otherwise."""
    from ..spaces import Space

    name = f"family {getattr(module, '__name__', module)}"
    for piece in missing(module, Family):
        raise _lacks(name, piece, Family)
    if not (isinstance(module.Space, type) and issubclass(module.Space, Space)):
        raise TypeError(f"{name}: its Space must subclass vitnas.spaces.Space (or StagedSpace)")
    for piece in missing(module.Space, FamilySpace):
        raise _lacks(f"{name}'s Space", piece, FamilySpace)
    return module


def check_model(model: Any) -> Any:
    """`model` if it provides the whole `Model` interface; a TypeError naming the first missing
    member otherwise."""
    for piece in missing(model, Model):
        raise _lacks(type(model).__name__, piece, Model)
    return model
