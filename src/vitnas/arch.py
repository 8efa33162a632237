"""`Arch`: one sub-network of a search space, as a frozen, JSON-serialisable value.

An architecture is a family name, a patch size and a tuple of stages; each stage has a token width
and one `Layer` per supernet layer (a block, or an identity that the network skips). ViTAS's
single-stage ViT is one stage; ViT-ResNAS's multi-stage ViT has three, joined by spatial reduction;
a Twins stage also carries its attention window and key/value sub-sampling ratio.

Kept free of torch so that the Snakefile, the search and the MACs counters can use it cheaply.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Layer:
    """One transformer layer: a block with `heads` heads over a QKV width `qkv`, or an identity.
    A family whose layers are not attention blocks names its layer's operation in `op` (e.g. the
    macro family's "ir_3x3_t3"); None elsewhere, and then not serialised or keyed, so the files
    and keys of the families without it are unchanged."""

    heads: int
    qkv: int
    mlp: int
    identity: bool = False
    op: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "op" or v is not None}

    def dims(self) -> tuple:
        """What the layer computes, as keyed: (heads, qkv, mlp), then its op where it has one."""
        return (self.heads, self.qkv, self.mlp) + ((self.op,) if self.op is not None else ())

    @property
    def head_dim(self) -> int:
        return self.qkv // self.heads


@dataclass(frozen=True)
class Stage:
    """Layers at one token resolution and width."""

    embed: int
    layers: tuple[Layer, ...]
    # Twins only (None elsewhere): the window of locally-grouped attention (1: every block global
    # sub-sampled attention) and the key/value sub-sampling ratio of global sub-sampled attention.
    ws: int | None = None
    sr: int | None = None

    @property
    def attention(self) -> dict:
        """The stage's attention settings that are set (ws, sr), as serialised and keyed."""
        return {k: v for k, v in (("ws", self.ws), ("sr", self.sr)) if v is not None}

    @property
    def blocks(self) -> tuple[Layer, ...]:
        """The layers that compute something, in order."""
        return tuple(layer for layer in self.layers if not layer.identity)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def shifted(self) -> "Stage":
        """Identity layers moved to the end, so depth d uses the stage's first d layers."""
        return replace(self, layers=self.blocks + tuple(l for l in self.layers if l.identity))


@dataclass(frozen=True)
class Arch:
    """A sub-network: its family, patch size (the stem's total stride), the channels of its conv
    stem (0: none, the patch projection reads the image) and stages."""

    patch: int
    stages: tuple[Stage, ...]
    family: str
    stem: int = 0

    @classmethod
    def single(cls, patch: int, embed: int, layers, family: str) -> "Arch":
        """A single-stage network."""
        return cls(patch=patch, stages=(Stage(embed, tuple(layers)),), family=family)

    def _only(self) -> Stage:
        if len(self.stages) != 1:
            raise AttributeError(f"a {len(self.stages)}-stage {self.family} architecture has no single "
                                 "embedding width or layer list; use .stages")
        return self.stages[0]

    @property
    def embed(self) -> int:
        """Token width of a single-stage network."""
        return self._only().embed

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Layers of a single-stage network."""
        return self._only().layers

    @property
    def depth(self) -> int:
        return sum(stage.depth for stage in self.stages)

    @property
    def blocks(self) -> tuple[Layer, ...]:
        """The layers that compute something, in order, over all stages."""
        return tuple(block for stage in self.stages for block in stage.blocks)

    def shifted(self) -> "Arch":
        """Identity shifting, per stage: move identity layers to the stage's end, so depth d uses
        its first d layers. Encodings that differ only in where identities sit describe one
        network; this is its canonical form."""
        return replace(self, stages=tuple(stage.shifted() for stage in self.stages))

    def key(self, shifting: bool = True) -> tuple:
        """Hashable identity of the network this encodes (identity layers' own choices ignored)."""
        arch = self.shifted() if shifting else self
        stages = tuple((s.embed, tuple(None if l.identity else l.dims() for l in s.layers))
                       + tuple(s.attention.items()) for s in arch.stages)
        return (self.family, self.patch, self.stem, stages)

    def to_dict(self) -> dict:
        return {"family": self.family, "patch": self.patch} | ({"stem": self.stem} if self.stem else {}) | {
            "stages": [{"embed": s.embed} | s.attention | {"layers": [l.to_dict() for l in s.layers]}
                       for s in self.stages]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        """Also reads the single-stage form {family, patch, embed, layers} of earlier versions."""
        try:
            stages = d["stages"] if "stages" in d else [{"embed": d["embed"], "layers": d["layers"]}]
            # File-format compatibility: single-stage files of earlier versions have no family key,
            # and every one of them is a vit network.
            family = d["family"] if "family" in d else "vit"
            return cls(patch=int(d["patch"]), family=family, stem=int(d.get("stem", 0)), stages=tuple(
                Stage(int(s["embed"]), tuple(Layer(**layer) for layer in s["layers"]),
                      **{k: int(s[k]) for k in ("ws", "sr") if s.get(k) is not None}) for s in stages))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not an architecture description ({e}); expected keys family, patch, "
                             "stages[embed, layers[heads, qkv, mlp, identity]]") from None

    @classmethod
    def from_json(cls, text: str) -> "Arch":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON ({e})") from None

    @classmethod
    def load(cls, path) -> "Arch":
        with open(path) as f:
            try:
                return cls.from_json(f.read())
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from None

    @classmethod
    def uniform(cls, patch: int, embed: int, depth: int, heads: int, qkv: int, mlp: int,
                max_layers: int | None = None, *, family: str) -> "Arch":
        """A hand-designed, DeiT-style single-stage network of `family`: `depth` identical blocks
        (then identities up to `max_layers`)."""
        max_layers = max(max_layers or depth, depth)
        return cls.single(patch, embed, [Layer(heads, qkv, mlp, identity=i >= depth) for i in range(max_layers)],
                          family)
