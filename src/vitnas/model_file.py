"""A model file: safetensors weights with the architecture in their metadata, back as the family's
stand-alone network. Retraining and the export stage write it; every stage that reads one (fine-
tuning, transfer, ONNX export, latency) loads it here."""
from __future__ import annotations

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .arch import Arch
from .errors import ResultError
from .families import build_model
from .io import atomic_path
from .spaces import Space


def save_model(model: torch.nn.Module, arch: Arch, path) -> None:
    """The model's weights as safetensors with the architecture in the metadata (atomically)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"arch": arch.to_json(), "format": f"vitnas-{arch.family}"})


def load_arch(path) -> Arch:
    """The architecture in a model file's metadata."""
    with safe_open(str(path), "pt") as f:
        return Arch.from_json(f.metadata()["arch"])


def load_model(path, space: Space, drop_path: float = 0.0, patch_head: bool = False) -> torch.nn.Module:
    """The network of a model file, as built (train mode, like any new module), loaded strictly.
    `patch_head`: add a freshly drawn patch head to fine-tune with retrain.patch_mixup (files are
    saved without it, as released); every other weight must still be in the file."""
    model = build_model(load_arch(path), space, drop_path=drop_path, patch_head=patch_head)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    missing = [k for k in missing if not (patch_head and k.startswith("patch_head."))]
    if missing or unexpected:
        raise ResultError(f"{path} does not fit its architecture (missing {', '.join(missing) or 'nothing'}; "
                          f"unexpected {', '.join(unexpected) or 'nothing'}); rerun the stage that wrote it")
    return model
