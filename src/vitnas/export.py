"""The export stage: a searched network leaves the supernet as a stand-alone model carrying the
supernet's inherited weights, without any training, written as retraining writes its models
(safetensors, the architecture in the metadata: `model_file.load_model` reads either; and as
ONNX, checked by onnxruntime) and scored on the test split with retraining's measures (top-1,
params, MACs, latency, throughput), so the models table holds it beside the retrained ones.

BatchNorm keeps the supernet's running statistics (no recalibration as in known_answer.py): the
exported file is then exactly the network the search scored (`supernet(x, arch) ==
export(arch)(x)`), and in ViT-ResNAS's space, the one family here with BatchNorm on the chain, it
sits only in the convolutional stem, which every sub-network shares unchanged, so those statistics
are the stem's own. (The macro CNN family's per-layer BatchNorm would gain from recalibration;
its supernets are scored on the known-answer benchmark, not exported.)
"""
from __future__ import annotations

import time

import torch

from . import families
from .arch import Arch
from .engine import resolve_device
from .families import build_space
from .io import write_json
from .results import inherited_model
from .model_file import save_model
from .retrain import test_metrics
from .supernet.train import load_supernet


def export_model(net: torch.nn.Module, arch: Arch) -> torch.nn.Module:
    """The stand-alone model of `arch` with `net`'s weights, in eval mode, in float32 on the CPU
    (path 0 where a supernet scores a width by two channel paths: one deployable network)."""
    return families.export(net.cpu().float().eval(), arch).float()


def run(cfg: dict, budget: str, arch_path, supernet_path, data_dir, weights_out, metrics_out,
        threads: int, onnx_out) -> dict:
    """Export the searched network of `budget` from the supernet at `supernet_path`, write its
    weights and its ONNX file, score and time it on the test split and write its metrics."""
    device = resolve_device(cfg["device"])
    space = build_space(cfg)
    arch = Arch.load(arch_path)
    t0 = time.perf_counter()
    model = export_model(load_supernet(cfg, supernet_path), arch)
    save_model(model, arch, weights_out)
    seconds = time.perf_counter() - t0
    model.to(device)
    metrics = test_metrics(model, inherited_model(budget), arch, space, cfg, data_dir, onnx_out, threads, device) | {
        "init": "inherited", "train_steps": 0, "epochs": 0, "train_seconds": 0.0, "export_seconds": seconds,
        "bn_statistics": "supernet"}
    write_json(metrics_out, metrics)
    return metrics
