"""Retraining: a found architecture, or a hand-designed DeiT-style baseline of matching MACs,
trained from scratch with one recipe; reports test top-1, parameters, MACs, and the model as ONNX
checked by onnxruntime with its latency and throughput measured (`vitnas.latency`)."""
from __future__ import annotations

import torch
from safetensors.torch import save_file

from . import distributed
from .arch import Arch
from .batches import train_batches
from .data import load_split
from .engine import resolve_device, train, write_log
from .loader import split_accuracy
from .io import atomic_path, write_json
from .families import build_model
from .families import build_space
from .latency import measure, row
from .onnx_export import export_onnx


def measure_model(model, arch: Arch, space, cfg: dict, onnx_out, threads: int, device) -> dict:
    """The model as ONNX (checked by onnxruntime) and its latency at batch 1 and the throughput
    batch, torch and onnxruntime: the metrics' keys onnx, latency, latency_*_ms and throughput."""
    ox, lat = cfg["onnx"], cfg["latency"]
    onnx = export_onnx(model, space.img_size, space.in_chans, onnx_out, ox["opset"], depth=arch.depth,
                       exporter=ox["exporter"])
    batch = cfg["retrain"]["throughput_batch"]
    record = measure(model, onnx_out, space.img_size, space.in_chans, sorted({1, batch}), threads,
                     lat["warmup"], lat["repeats"], device)
    speed = row(record, "torch", batch)
    return {
        "latency_torch_ms": row(record, "torch", 1)["median_ms"],
        "latency_ort_ms": row(record, "onnxruntime", 1)["median_ms"],
        "throughput": speed["images_per_second"],  # the median call at the throughput batch
        "throughput_device": f"{device.type} ({threads} thread{'s' * (threads > 1)}, batch {batch})",
        "latency": record, "onnx": onnx,
    }


def run(cfg: dict, model_name: str, arch_path, data_dir, weights_out, metrics_out, log_out,
        ckpt_dir, threads: int, onnx_out) -> dict | None:
    """The stage; under torchrun every rank trains, rank 0 measures and writes (others: None)."""
    rt = cfg["retrain"]
    ctx = distributed.setup(resolve_device(cfg["device"]))
    device = ctx.device
    space = build_space(cfg)
    arch = Arch.load(arch_path)
    torch.manual_seed(cfg["seed"])
    model = build_model(arch, space, drop_path=rt["drop_path"])
    batches = train_batches(cfg, "retrain", load_split(data_dir, "train", cfg["data"]["dataset"]), space, ctx)
    log = train(model, lambda m, x, step: m(x), batches, rt, ckpt_dir, f"retrain {model_name}", ctx)
    distributed.teardown(ctx)
    if not ctx.main:
        return None
    model.eval()
    test = load_split(data_dir, "test", cfg["data"]["dataset"])  # final numbers only
    top1, test_images = split_accuracy(model, cfg, test, "test", space.img_size, rt["eval_batch_size"], device)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights_out) as tmp:
        save_file(state, str(tmp), metadata={"arch": arch.to_json(), "format": f"vitnas-{arch.family}"})
    write_log(log, log_out)
    kind, budget = model_name.split("-", 1)
    metrics = {
        "model": model_name, "kind": kind, "budget": budget, "top1": top1,
        "params": sum(p.numel() for p in model.parameters()), "macs": space.macs(arch),
        **measure_model(model, arch, space, cfg, onnx_out, threads, device),
        "epochs": log[-1]["epoch"] if log else 0, "train_seconds": log[-1]["seconds"] if log else 0.0,
        "test_images": test_images, "arch": arch.to_dict(),
    }
    write_json(metrics_out, metrics)
    return metrics
