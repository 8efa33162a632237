"""Fine-tune a ViT-backboned detector on a COCO-format folder and score it with COCOeval (bbox)."""
from __future__ import annotations

import contextlib
import copy
import io
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .. import distributed
from ..distributed import Context
from ..engine import TrainingError
from ..models.vit import ViT
from .dataset import CocoDetectionSet, coco_from_dict
from .model import build_detector

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]
LOSS_WINDOW = 20  # steps averaged into train_loss_last


def _batches(n: int, batch_size: int, steps: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """`steps` index batches from successive seeded permutations (every image once per epoch)."""
    order = np.empty(0, dtype=np.int64)
    for _ in range(steps):
        while len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(n)])
        yield order[:batch_size]
        order = order[batch_size:]


def _collate(dataset: CocoDetectionSet, indices, device) -> tuple[list, list]:
    images, targets = [], []
    for i in indices:
        image, target = dataset[int(i)]
        images.append(image.to(device))
        targets.append({"boxes": target["boxes"].to(device), "labels": target["labels"].to(device)})
    return images, targets


def train_detector(model: nn.Module, dataset: CocoDetectionSet, steps: int, batch_size: int,
                   lr: float, weight_decay: float, seed: int, ctx: Context = Context(),
                   progress: bool = True, backbone_lr_scale: float = 1.0) -> list[float]:
    """AdamW with warmup and a cosine decay, per-step; returns the total loss of every step
    (averaged over ranks when run under torchrun: each rank takes its share of every batch).

    The pretrained ViT learns at `backbone_lr_scale` x lr, the new pyramid and heads at lr: a full
    learning rate on the backbone washes out what classification taught it."""
    vit = model.backbone.vit
    vit_ids = {id(p) for p in vit.parameters()}
    # timm's schedulers multiply a group's lr by its "lr_scale" (as for layer-wise decay).
    groups = [{"params": list(vit.parameters()), "lr_scale": backbone_lr_scale},
              {"params": [p for p in model.parameters() if id(p) not in vit_ids]}]
    optimizer = create_optimizer_v2(groups, opt="adamw", lr=lr, weight_decay=weight_decay)
    # Warmup: the fresh heads' first gradients are large next to the pretrained backbone's.
    scheduler = CosineLRScheduler(optimizer, t_initial=steps, lr_min=lr * 0.01,
                                  warmup_t=min(50, steps // 10), warmup_lr_init=lr * 0.01,
                                  t_in_epochs=False)
    net = model
    if ctx.active:
        net = DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
    rng = np.random.default_rng(seed)
    model.train()
    losses = []
    bar = tqdm(total=steps, desc="detection fine-tune", file=sys.stderr, mininterval=5.0,
               disable=not (progress and ctx.main))
    for step, indices in enumerate(_batches(len(dataset), batch_size, steps, rng)):
        images, targets = _collate(dataset, indices[ctx.rank::ctx.world], ctx.device)
        loss = sum(net(images, targets).values())
        if not torch.isfinite(loss):
            raise TrainingError(f"detection loss is {loss.item()} at step {step}; lower transfer.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step_update(step + 1)
        losses.append(distributed.mean(ctx, loss.item()))
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    return losses


def detections_to_coco(image_ids, detections: list[dict]) -> list[dict]:
    """torchvision detector outputs (xyxy boxes, scores, labels) -> COCO results (xywh bbox)."""
    results = []
    for image_id, det in zip(image_ids, detections):
        boxes = det["boxes"].detach().cpu().double()
        boxes[:, 2:] -= boxes[:, :2]
        scores, labels = det["scores"].tolist(), det["labels"].tolist()
        for box, score, label in zip(boxes.tolist(), scores, labels):
            results.append({"image_id": int(image_id), "category_id": int(label),
                            "bbox": box, "score": float(score)})
    return results


@torch.no_grad()
def predict(model: nn.Module, dataset: CocoDetectionSet, batch_size: int,
            device="cpu") -> list[dict]:
    """The detector's outputs on every image of `dataset`, as COCO results."""
    model.eval()
    results = []
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        images, _ = _collate(dataset, indices, device)
        results += detections_to_coco([dataset.ids[i] for i in indices], model(images))
    return results


def coco_evaluate(coco_gt: COCO, results: list[dict], verbose: bool = False) -> dict:
    """COCO bbox AP, AP50, AP75, APs, APm, APl in percent; None where an area range has no
    ground truth (COCOeval's -1). `verbose` sends pycocotools' summary to stderr."""
    with contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO()):
        if results:  # loadRes adds keys to the dicts it is given: hand it copies
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
        else:  # loadRes cannot take an empty list; an empty result set scores 0
            coco_dt = coco_from_dict({"images": coco_gt.dataset["images"],
                                      "categories": coco_gt.dataset["categories"],
                                      "annotations": []})
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {k: None if s < 0 else float(s) * 100 for k, s in zip(AP_KEYS, evaluator.stats[:6])}


def finetune_and_evaluate(vit: ViT, cfg_transfer: dict, det_dir, seed: int,
                          progress: bool = True, ctx: Context = Context()) -> dict | None:
    """Fine-tune a detector around a copy of `vit` on det_dir/train, evaluate on det_dir/val.

    Deterministic given `seed` (head initialisation, batch order, Faster R-CNN's sampling).
    Returns AP_KEYS (percent or None), steps, train_loss_last and detector; under torchrun every
    rank fine-tunes and rank 0 evaluates and returns (the others return None).
    """
    det_dir = Path(det_dir)
    channels = vit.patch_embed.proj.in_channels
    train = CocoDetectionSet(det_dir / "train", det_dir / "instances_train.json", channels)
    val = CocoDetectionSet(det_dir / "val", det_dir / "instances_val.json", channels)
    num_classes = max(train.coco.getCatIds())
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg_transfer["threads"])
    try:
        torch.manual_seed(seed)
        model = build_detector(copy.deepcopy(vit), cfg_transfer["detector"], num_classes,
                               cfg_transfer["canvas"], tuple(cfg_transfer["object_size"]))
        model.to(ctx.device)
        losses = train_detector(model, train, cfg_transfer["steps"], cfg_transfer["batch_size"],
                                cfg_transfer["lr"], cfg_transfer["weight_decay"], seed, ctx,
                                progress, cfg_transfer["backbone_lr_scale"])
        if not ctx.main:
            return None
        results = predict(model, val, cfg_transfer["batch_size"], ctx.device)
    finally:
        torch.set_num_threads(threads)
    metrics = coco_evaluate(val.coco, results, verbose=progress)
    return {**metrics, "steps": len(losses),
            "train_loss_last": float(np.mean(losses[-LOSS_WINDOW:])),
            "detector": cfg_transfer["detector"]}
