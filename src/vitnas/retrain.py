"""Retraining: a found architecture, or a hand-designed DeiT-style baseline of matching MACs,
trained from scratch with one recipe, or (retrain.init: inherited, and the ft-<budget> models of
retrain.compare_finetune) a searched network fine-tuned from the supernet's inherited weights (the
export stage's file) with `retrain.finetune`'s recipe;
reports test top-1, parameters, MACs, and the model as ONNX checked by onnxruntime with its latency
and throughput measured (`vitnas.latency`)."""
from __future__ import annotations

import torch

from . import distributed
from .arch import Arch
from .config import retrain_recipe
from .batches import train_batches
from .data import load_split
from .engine import resolve_device, train, write_log
from .loader import split_accuracy
from .errors import ResultError
from .io import write_json
from .families import build_model
from .families import build_space
from .latency import measure, row
from .model_file import load_arch, load_model, save_model
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


def test_metrics(model, model_name: str, arch: Arch, space, cfg: dict, data_dir, onnx_out, threads: int,
                 device) -> dict:
    """What a model file's metrics.json holds, retrained or exported: test top-1 (the test split:
    final numbers only), size, MACs, and the ONNX file with latency and throughput."""
    test = load_split(data_dir, "test", cfg["data"]["dataset"])
    top1, test_images = split_accuracy(model, cfg, test, "test", space.img_size, cfg["retrain"]["eval_batch_size"],
                                       device)
    kind, budget = model_name.split("-", 1)
    return {"model": model_name, "kind": kind, "budget": budget, "top1": top1,
            "params": sum(p.numel() for p in model.parameters()), "macs": space.macs(arch),
            **measure_model(model, arch, space, cfg, onnx_out, threads, device),
            "test_images": test_images, "arch": arch.to_dict()}


def init_key(path) -> str:
    """A checkpoint subfolder for a fine-tune from `path`: another supernet's weights start over."""
    import hashlib

    with open(path, "rb") as f:
        return f"init-{hashlib.file_digest(f, 'sha256').hexdigest()[:12]}"


def run(cfg: dict, model_name: str, arch_path, data_dir, weights_out, metrics_out, log_out,
        ckpt_dir, threads: int, onnx_out, init_path=None) -> dict | None:
    """The stage; under torchrun every rank trains, rank 0 measures and writes (others: None).
    `init_path`: the export's weights to fine-tune from (retrain.init: inherited); None: from scratch."""
    rt = cfg["retrain"]
    ctx = distributed.setup(resolve_device(cfg["device"]))
    device = ctx.device
    space = build_space(cfg)
    arch = Arch.load(arch_path)
    torch.manual_seed(cfg["seed"])
    init = "scratch" if init_path is None else "inherited"
    if init_path is None:
        model = build_model(arch, space, drop_path=rt["drop_path"], patch_head=rt["patch_mixup"])
    else:
        if load_arch(init_path) != arch:
            raise ResultError(f"{init_path} holds another architecture than {arch_path}; rerun the export stage")
        model = load_model(init_path, space, drop_path=rt["drop_path"], patch_head=rt["patch_mixup"])
    # With retrain.patch_mixup the patch head trains on patch-level mixup, as in the supernet stage.
    batches = train_batches(cfg, "retrain", load_split(data_dir, "train", cfg["data"]["dataset"]), space, ctx,
                            model.patch_grid if rt["patch_mixup"] else None)
    settings = retrain_recipe(rt, init)
    log = train(model, lambda m, x, step: m(x), batches, settings, ckpt_dir, f"retrain {model_name}", ctx)
    distributed.teardown(ctx)
    if not ctx.main:
        return None
    if rt["patch_mixup"]:  # the released inference model: no patch head (weights, params, throughput)
        model.drop_patch_head()
    model.eval()
    save_model(model, arch, weights_out)
    write_log(log, log_out)
    metrics = test_metrics(model, model_name, arch, space, cfg, data_dir, onnx_out, threads, device) | {
        # What training cost, for the claims (compute of scratch against fine-tune): images = steps x batch.
        "init": init, "train_steps": log[-1]["step"] if log else 0,
        "train_images": (log[-1]["step"] if log else 0) * settings["batch_size"],
        "epochs": log[-1]["epoch"] if log else 0, "train_seconds": log[-1]["seconds"] if log else 0.0}
    write_json(metrics_out, metrics)
    return metrics
