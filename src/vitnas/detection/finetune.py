"""Fine-tune a ViT-backboned detector on a COCO-format folder and score it with COCOeval (bbox)."""
from __future__ import annotations

import contextlib
import copy
import io
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..batches import seed_everything, step_seed
from ..distributed import Context
from ..engine import train
from .dataset import CocoDetectionSet, coco_from_dict
from .model import build_detector

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]
LOSS_WINDOW = 20  # steps averaged into each logged loss (train_loss_last: the last of them)


def _collate(dataset: CocoDetectionSet, indices) -> tuple[list, list]:
    images, targets = [], []
    for i in indices:
        image, target = dataset[int(i)]
        images.append(image)
        targets.append({"boxes": target["boxes"], "labels": target["labels"]})
    return images, targets


class DetectionBatches:
    """The detection training stream for `engine.train`: batch `step` holds the images of a
    per-epoch permutation seeded by (seed, epoch), so it is a pure function of (seed, step) and a
    resumed run sees what an uninterrupted one saw; each rank takes its share. x = (images,
    targets), which the detector's training forward takes together; its output is the loss dict."""

    def __init__(self, dataset: CocoDetectionSet, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.dataset, self.batch_size, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self.steps_per_epoch = max(1, len(dataset) // batch_size)

    def get(self, step: int):
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        batch = perm[pos * self.batch_size:(pos + 1) * self.batch_size][self.rank::self.world]
        seed_everything(step_seed(self.seed, step, -1 - self.rank))  # Faster R-CNN's sampling
        return _collate(self.dataset, batch), None

    @staticmethod
    def criterion(losses: dict, _) -> torch.Tensor:
        return sum(losses.values())


def train_detector(model: nn.Module, dataset: CocoDetectionSet, steps: int, batch_size: int,
                   lr: float, weight_decay: float, seed: int, ckpt_dir, ctx: Context = Context(),
                   backbone_lr_scale: float = 1.0) -> list[dict]:
    """Fine-tune through `engine.train` (AdamW, warm-up then cosine, per step; checkpoints and
    resume like every training stage); returns the training log (mean loss per LOSS_WINDOW steps).

    The pretrained backbone learns at `backbone_lr_scale` x lr, the new pyramid and heads at lr: a
    full learning rate on the backbone washes out what classification taught it. Warm-up: the
    fresh heads' first gradients are large next to the pretrained backbone's."""
    body = model.backbone.body
    body_ids = {id(p) for p in body.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in body_ids]},
              {"params": list(body.parameters()), "lr_scale": backbone_lr_scale}]
    recipe = {"max_steps": steps, "epochs": 1, "lr": lr, "min_lr": lr * 0.01, "weight_decay": weight_decay,
              "warmup_steps": min(50, steps // 10), "log_every": min(LOSS_WINDOW, steps),
              "checkpoint_every": max(1, min(100, steps))}
    batches = DetectionBatches(dataset, batch_size, seed, ctx.rank, ctx.world)
    return train(model, lambda net, x, step: net(*x), batches, recipe, ckpt_dir, "detection fine-tune", ctx,
                 param_groups=groups)


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
        images, _ = _collate(dataset, indices)
        results += detections_to_coco([dataset.ids[i] for i in indices], model([im.to(device) for im in images]))
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


def finetune_and_evaluate(backbone: nn.Module, cfg_transfer: dict, det_dir, seed: int, ckpt_dir,
                          progress: bool = True, ctx: Context = Context()) -> dict | None:
    """Fine-tune a detector around a copy of `backbone` (a retrained model of any family) on
    det_dir/train, evaluate on det_dir/val.

    Deterministic given `seed` (head initialisation, batch order, Faster R-CNN's sampling).
    Returns AP_KEYS (percent or None), steps, train_loss_last and detector; under torchrun every
    rank fine-tunes and rank 0 evaluates and returns (the others return None).
    """
    det_dir = Path(det_dir)
    channels = backbone.in_chans
    train_set = CocoDetectionSet(det_dir / "train", det_dir / "instances_train.json", channels)
    val = CocoDetectionSet(det_dir / "val", det_dir / "instances_val.json", channels)
    num_classes = max(train_set.coco.getCatIds())
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg_transfer["threads"])
    try:
        torch.manual_seed(seed)
        model = build_detector(copy.deepcopy(backbone), cfg_transfer["detector"], num_classes,
                               cfg_transfer["canvas"], tuple(cfg_transfer["object_size"]))
        log = train_detector(model, train_set, cfg_transfer["steps"], cfg_transfer["batch_size"],
                             cfg_transfer["lr"], cfg_transfer["weight_decay"], seed, ckpt_dir, ctx,
                             cfg_transfer["backbone_lr_scale"])
        if not ctx.main:
            return None
        results = predict(model, val, cfg_transfer["batch_size"], ctx.device)
    finally:
        torch.set_num_threads(threads)
    metrics = coco_evaluate(val.coco, results, verbose=progress)
    return {**metrics, "steps": log[-1]["step"], "train_loss_last": float(log[-1]["loss"]),
            "detector": cfg_transfer["detector"]}
