"""`Arch`: one sub-network of a search space, as a frozen, JSON-serialisable value.

Kept free of torch so that the Snakefile, the search and the MACs counter can use it cheaply.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Layer:
    """One transformer layer: a block with `heads` heads over a QKV width `qkv`, or an identity."""

    heads: int
    qkv: int
    mlp: int
    identity: bool = False

    @property
    def head_dim(self) -> int:
        return self.qkv // self.heads


@dataclass(frozen=True)
class Arch:
    """A single-stage ViT sub-network: patch size, token width and one `Layer` per supernet layer."""

    patch: int
    embed: int
    layers: tuple[Layer, ...]
    family: str = "vit"

    @property
    def depth(self) -> int:
        return sum(not layer.identity for layer in self.layers)

    @property
    def blocks(self) -> tuple[Layer, ...]:
        """The layers that compute something, in order."""
        return tuple(layer for layer in self.layers if not layer.identity)

    def shifted(self) -> "Arch":
        """Identity shifting: move identity layers to the end, so depth d uses the first d layers.

        Encodings that differ only in where identities sit describe one network; this is its
        canonical form.
        """
        active = [layer for layer in self.layers if not layer.identity]
        idle = [layer for layer in self.layers if layer.identity]
        return replace(self, layers=tuple(active + idle))

    def key(self, shifting: bool = True) -> tuple:
        """Hashable identity of the network this encodes (identity layers' own choices ignored)."""
        arch = self.shifted() if shifting else self
        layers = tuple(None if l.identity else (l.heads, l.qkv, l.mlp) for l in arch.layers)
        return (self.family, self.patch, self.embed, layers)

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "patch": self.patch,
            "embed": self.embed,
            "layers": [asdict(layer) for layer in self.layers],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> "Arch":
        try:
            layers = tuple(Layer(**layer) for layer in d["layers"])
            return cls(patch=int(d["patch"]), embed=int(d["embed"]), layers=layers,
                       family=d.get("family", "vit"))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an architecture description ({e}); expected keys "
                             "family, patch, embed, layers[heads, qkv, mlp, identity]") from None

    @classmethod
    def from_json(cls, text: str) -> "Arch":
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path) -> "Arch":
        with open(path) as f:
            return cls.from_json(f.read())

    @classmethod
    def uniform(cls, patch: int, embed: int, depth: int, heads: int, qkv: int, mlp: int,
                max_layers: int | None = None) -> "Arch":
        """A hand-designed, DeiT-style network: `depth` identical blocks (then identities)."""
        max_layers = max(max_layers or depth, depth)
        layers = [Layer(heads, qkv, mlp, identity=i >= depth) for i in range(max_layers)]
        return cls(patch=patch, embed=embed, layers=tuple(layers))
