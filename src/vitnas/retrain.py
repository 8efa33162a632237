"""Retraining: a found architecture, or a hand-designed DeiT-style baseline of matching MACs,
trained from scratch with one recipe; reports test top-1, parameters, MACs and throughput."""
from __future__ import annotations

import time

import torch
from safetensors.torch import load_file, save_file

from . import distributed
from .arch import Arch
from .batches import train_batches
from .data import load_split
from .engine import resolve_device, train, write_log
from .loader import split_accuracy
from .io import atomic_path, write_json
from .families import build_model
from .families import build_space
from .spaces import Space


@torch.no_grad()
def throughput(model: torch.nn.Module, img_size: int, in_chans: int, batch: int, device,
               warmup: int = 3, iters: int = 10) -> float:
    """Inference images per second at batch `batch` on this machine (total time over `iters` batches)."""
    model.eval()
    x = torch.randn(batch, in_chans, img_size, img_size, device=device)
    for _ in range(warmup):
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t0)


def load_model(path, space: Space) -> torch.nn.Module:
    """A retrained model from its safetensors file (the architecture is in its metadata)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        arch = Arch.from_json(f.metadata()["arch"])
    model = build_model(arch, space)
    model.load_state_dict(load_file(str(path)))
    return model


def run(cfg: dict, model_name: str, arch_path, data_dir, weights_out, metrics_out, log_out,
        ckpt_dir, threads: int) -> dict | None:
    """The stage; under torchrun every rank trains, rank 0 measures and writes (others: None)."""
    rt = cfg["retrain"]
    ctx = distributed.setup(resolve_device(cfg["device"]))
    device = ctx.device
    space = build_space(cfg)
    arch = Arch.load(arch_path)
    torch.manual_seed(cfg["seed"])
    model = build_model(arch, space, drop_path=rt["drop_path"], patch_head=rt["patch_mixup"])
    # With retrain.patch_mixup the patch head trains on patch-level mixup, as in the supernet stage.
    batches = train_batches(cfg, "retrain", load_split(data_dir, "train", cfg["data"]["dataset"]), space, ctx,
                            model.patch_grid if rt["patch_mixup"] else None)
    log = train(model, lambda m, x, step: m(x), batches, rt, ckpt_dir, f"retrain {model_name}", ctx)
    distributed.teardown(ctx)
    if not ctx.main:
        return None
    if rt["patch_mixup"]:  # the released inference model: no patch head (weights, params, throughput)
        model.drop_patch_head()
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
        "throughput": throughput(model, space.img_size, space.in_chans, rt["throughput_batch"], device),
        "throughput_device": f"{device.type} ({threads} thread{'s' * (threads > 1)}, batch {rt['throughput_batch']})",
        "epochs": log[-1]["epoch"] if log else 0, "train_seconds": log[-1]["seconds"] if log else 0.0,
        "test_images": test_images, "arch": arch.to_dict(),
    }
    write_json(metrics_out, metrics)
    return metrics
