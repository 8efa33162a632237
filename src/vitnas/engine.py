"""One training loop for supernet training and retraining, readable top to bottom.

What it guarantees:
- timm's AdamW and cosine schedule (with warm-up), stepped per update;
- a checkpoint every `checkpoint_every` steps and at every epoch end, written atomically into a
  folder outside Snakemake's declared outputs, and picked up automatically on the next run;
- resume equivalence: batches and all randomness are functions of (seed, step) (see batches.py),
  so a killed and restarted run ends with the same weights as an uninterrupted one;
- SIGTERM / SIGUSR1 (SLURM's warning before the time limit) checkpoint and stop with an error, so
  Snakemake's `--retries` resubmits the job and it resumes;
- batches made ahead by DataLoader worker processes (`data.workers`, vitnas.loader), the same
  batches the training process would make;
- a NaN or infinite loss stops the run with an error naming the step;
- under torchrun: DistributedDataParallel, every rank on its share of each global batch, the stop
  decision and logged loss agreed across ranks, only rank 0 writing; bf16 autocast on GPUs.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler
from timm.utils.model_ema import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import distributed, loader
from .batches import TrainBatches
from .distributed import Context
from .errors import CheckpointError, TrainingError
from .io import atomic_path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda requested but no GPU is visible; set device: cpu or auto")
    return torch.device(name)


def progress(total: int, initial: int, desc: str, disable: bool = False) -> tqdm:
    """A progress bar on stderr; in a log file (no TTY) a line every 30 s instead of a redraw storm."""
    return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 30, unit="step", disable=disable)


class _StopRequest:
    """Turns SIGTERM / SIGUSR1 into a flag the loop checks between steps."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """A checkpoint written by `save_checkpoint`: tensors, numbers, strings and containers only.
    `weights_only=True` refuses any other pickled object, so a planted file cannot run code; a file
    that does not load stops the stage with one line naming it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # pickle refused, truncated file, not a torch file: all the same to the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely ({reason[:160]}); delete it to "
                              "start this stage afresh") from None


def to_device(batch, device: torch.device):
    """Tensors, and lists / tuples / dicts of them (a detector's images and targets), on `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def train(model: nn.Module, forward: Callable[[nn.Module, object, int], object],
          batches: TrainBatches, cfg: dict, ckpt_dir, desc: str, ctx: Context,
          find_unused_parameters: bool = False, param_groups: list[dict] | None = None,
          on_epoch_start: Callable[[nn.Module, torch.optim.Optimizer, int], None] | None = None) -> list[dict]:
    """Train `model` in place. `batches.make(step)` gives (x, y) of step `step` (made by
    `batches.workers` worker processes ahead of time, when it has that many) and
    `batches.finish(x, y, step)` completes it in the training process (seeds the step's own
    randomness, mixes), `forward(model, x, step)` the output (the supernet picks the step's architectures there) and
    `batches.criterion(output, y)` the loss. Returns the training log rows.
    `find_unused_parameters`: for DDP when a step uses only part of the model (the supernet).
    `param_groups`: optimizer groups instead of all parameters alike (a group's "lr_scale"
    multiplies its learning rate, as timm's schedulers do). `on_epoch_start(model, optimizer,
    epoch)`: called before an epoch's first step (the supernet re-sorts its weights there); a resume
    mid-epoch does not repeat it, as the checkpoint holds its effect."""
    total = cfg["max_steps"] or max(1, math.ceil(cfg["epochs"] * batches.steps_per_epoch))
    device = ctx.device
    model.to(device)
    net = model
    if ctx.active:
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                      find_unused_parameters=find_unused_parameters)
    optimizer = create_optimizer_v2(param_groups or model, "adamw", lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if cfg.get("schedule", "cosine") == "step":  # lr x decay_rate from each of decay_steps (detection's 1x)
        # timm applies milestone m from update m - 1 (and after the warm-up with warmup_prefix): + 1 and
        # no prefix make decay_steps the first updates at the lower rate, counted from step 0.
        scheduler = MultiStepLRScheduler(optimizer, decay_t=[d + 1 for d in cfg["decay_steps"]],
                                         decay_rate=cfg.get("decay_rate", 0.1),
                                         warmup_t=min(cfg["warmup_steps"], total - 1),
                                         warmup_lr_init=cfg["lr"] * 0.01, warmup_prefix=False, t_in_epochs=False)
    else:
        scheduler = CosineLRScheduler(optimizer, t_initial=total, lr_min=cfg["min_lr"],
                                      warmup_t=min(cfg["warmup_steps"], total - 1),
                                      warmup_lr_init=cfg["lr"] * 0.01, t_in_epochs=False)
    # timm's EMA of the weights (ViT-ResNAS's retraining): the trained model becomes the EMA.
    ema = ModelEmaV3(model, decay=cfg["ema_decay"]) if cfg.get("ema_decay") else None
    ckpt_path = Path(ckpt_dir) / "last.pt"
    step, log, elapsed, losses = 0, [], 0.0, []
    if ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, device)
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, log, elapsed = state["step"], state["log"], state["elapsed"]
        losses = state.get("pending_losses", [])  # the open log row's steps before the kill
        print(f"[{desc}] resumed from step {step} of {total} ({ckpt_path})", file=sys.stderr)
    else:
        scheduler.step_update(0)

    def checkpoint():
        # Batches and randomness are functions of (seed, step), so the step is the data position
        # and no RNG state is needed to resume exactly.
        if ctx.main:
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                        "scheduler": scheduler.state_dict(), "step": step, "log": log,
                                        "pending_losses": losses, "elapsed": elapsed + time.time() - t0,
                                        "world": ctx.world} | ({"ema": ema.state_dict()} if ema else {}))

    model.train()
    t0 = time.time()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    stream = loader.steps(batches, step, total, getattr(batches, "workers", 0), pin_memory=device.type == "cuda")
    with _StopRequest() as stop, progress(total, step, desc, disable=not ctx.main) as bar, closing(stream):
        while step < total:
            if on_epoch_start is not None and step % batches.steps_per_epoch == 0:
                on_epoch_start(model, optimizer, step // batches.steps_per_epoch)
            try:
                batch = next(stream)
            except Exception:
                if stop.signal is None:
                    raise
                checkpoint()  # SIGTERM ended the workers too: this step has not begun
                raise TrainingError(f"{desc}: {stop.signal} received; checkpointed at step {step}, rerun (or "
                                    "let --retries resubmit) to resume") from None
            x, y = batches.finish(*to_device(batch, device), step)  # seeds, CutMix: on the device
            with autocast:
                loss = batches.criterion(forward(net, x, step), y)
            if not torch.isfinite(loss):
                raise TrainingError(f"{desc}: loss is {loss.item()} at step {step}; lower the learning "
                                    "rate or check the data (training stopped, last checkpoint kept)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update(model, step=step)
            step += 1
            scheduler.step_update(step)
            # The step's loss over the global batch (the mean of the ranks' means): the open log row
            # a checkpoint carries is then the same on every rank and for any layout that resumes it.
            losses.append(distributed.mean(ctx, loss.item()))
            bar.update(1)
            if step % cfg["log_every"] == 0 or step == total:
                log.append({"step": step, "epoch": step / batches.steps_per_epoch,
                            "loss": float(np.mean(losses)),
                            "lr": optimizer.param_groups[0]["lr"],
                            "seconds": round(elapsed + time.time() - t0, 2)})
                bar.set_postfix(loss=f"{log[-1]['loss']:.3f}", lr=f"{log[-1]['lr']:.2e}")
                losses = []
            if step % cfg["checkpoint_every"] == 0 or step % batches.steps_per_epoch == 0:
                checkpoint()
            if distributed.mean(ctx, float(stop.signal is not None)) > 0:  # all ranks stop together
                checkpoint()
                raise TrainingError(f"{desc}: {stop.signal or 'stop'} received; checkpointed at step "
                                    f"{step}, rerun (or let --retries resubmit) to resume")
    checkpoint()
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    return log


def write_log(log: list[dict], path) -> None:
    """`train_log.csv`: one row per `log_every` steps. Wall-clock seconds stay out of it (they are in
    the stage's metrics and Snakemake's benchmark files), so a killed and resumed run writes the same
    file byte for byte as an uninterrupted one."""
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(log).drop(columns=["seconds"], errors="ignore").to_csv(tmp, index=False)


def set_threads(threads: int) -> None:
    """Intra-op threads for this stage (Snakemake's `threads:`); also for the BLAS underneath."""
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
