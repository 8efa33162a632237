"""Retraining: a found architecture, or a hand-designed DeiT-style baseline of matching MACs,
trained from scratch with one recipe, or (retrain.init: inherited) a searched network fine-tuned
from the supernet's inherited weights (the export stage's file) with `retrain.finetune`'s recipe;
reports test top-1, parameters, MACs and throughput."""
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


def save_model(model: torch.nn.Module, arch: Arch, path) -> None:
    """The model's weights as safetensors with the architecture in the metadata (atomically)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"arch": arch.to_json(), "format": f"vitnas-{arch.family}"})


def read_arch(path) -> Arch:
    """The architecture in a model file's metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return Arch.from_json(f.metadata()["arch"])


def load_model(path, space: Space, drop_path: float = 0.0) -> torch.nn.Module:
    """A retrained (or exported) model from its safetensors file (the architecture is in its metadata)."""
    model = build_model(read_arch(path), space, drop_path=drop_path)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model


def init_key(path) -> str:
    """A checkpoint subfolder for a fine-tune from `path`: another supernet's weights start over."""
    import hashlib

    with open(path, "rb") as f:
        return f"init-{hashlib.file_digest(f, 'sha256').hexdigest()[:12]}"


def recipe(rt: dict, init: str) -> dict:
    """The training settings of `init`: retrain's, or with `inherited` its `finetune` section over them."""
    return rt | rt["finetune"] if init == "inherited" else rt


def run(cfg: dict, model_name: str, arch_path, data_dir, weights_out, metrics_out, log_out,
        ckpt_dir, threads: int, init_path=None) -> dict | None:
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
        model = build_model(arch, space, drop_path=rt["drop_path"])
    else:
        if read_arch(init_path) != arch:
            raise ValueError(f"{init_path} holds another architecture than {arch_path}; rerun the export stage")
        model = load_model(init_path, space, drop_path=rt["drop_path"])
    batches = train_batches(cfg, "retrain", load_split(data_dir, "train", cfg["data"]["dataset"]), space, ctx)
    log = train(model, lambda m, x, step: m(x), batches, recipe(rt, init), ckpt_dir, f"retrain {model_name}", ctx)
    distributed.teardown(ctx)
    if not ctx.main:
        return None
    model.eval()
    test = load_split(data_dir, "test", cfg["data"]["dataset"])  # final numbers only
    top1, test_images = split_accuracy(model, cfg, test, "test", space.img_size, rt["eval_batch_size"], device)
    save_model(model, arch, weights_out)
    write_log(log, log_out)
    kind, budget = model_name.split("-", 1)
    metrics = {
        "model": model_name, "kind": kind, "budget": budget, "top1": top1,
        "params": sum(p.numel() for p in model.parameters()), "macs": space.macs(arch),
        "throughput": throughput(model, space.img_size, space.in_chans, rt["throughput_batch"], device),
        "throughput_device": f"{device.type} ({threads} thread{'s' * (threads > 1)}, batch {rt['throughput_batch']})",
        "init": init, "train_steps": log[-1]["step"] if log else 0,
        "epochs": log[-1]["epoch"] if log else 0, "train_seconds": log[-1]["seconds"] if log else 0.0,
        "test_images": test_images, "arch": arch.to_dict(),
    }
    write_json(metrics_out, metrics)
    return metrics
