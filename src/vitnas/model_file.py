"""A retrained (or exported) model file: safetensors weights with the architecture in their
metadata, back as the family's stand-alone network. Any stage that reads a model file (transfer,
ONNX export, latency) loads it here."""
from __future__ import annotations

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .arch import Arch
from .families import build_model
from .spaces import Space


def load_model(path, space: Space) -> torch.nn.Module:
    """The network of a model file (the architecture is in its metadata), as built (train mode, like any new module)."""
    with safe_open(str(path), "pt") as f:
        arch = Arch.from_json(f.metadata()["arch"])
    model = build_model(arch, space)
    model.load_state_dict(load_file(str(path)))
    return model


def load_arch(path) -> Arch:
    with safe_open(str(path), "pt") as f:
        return Arch.from_json(f.metadata()["arch"])
