"""Fine-tune a ViT-backboned detector on a COCO-format set (the composed one, or COCO 2017) and
score it with COCOeval (bbox)."""
from __future__ import annotations

import contextlib
import copy
import io
import math
import sys

import numpy as np
import torch
import torch.nn as nn
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..batches import seed_everything, step_seed
from ..distributed import Context
from ..engine import train
from .dataset import Categories, CocoDetectionSet, coco_from_dict, detection_paths
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


def _hflip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """The image mirrored left-right, with its xyxy boxes."""
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = image.shape[-1] - target["boxes"][:, [2, 0]]
    return image.flip(-1), target | {"boxes": boxes}


class DetectionBatches:
    """The detection training stream for `engine.train`: batch `step` holds the images of a
    per-epoch permutation seeded by (seed, epoch), each mirrored with probability `hflip` by a
    draw seeded by (seed, step), so it is a pure function of (seed, step) and a resumed run sees
    what an uninterrupted one saw; each rank takes its share. x = (images, targets), which the
    detector's training forward takes together; its output is the loss dict. `workers`: processes
    that decode the images ahead (engine.train's loader: `make`); `finish` seeds the training
    process for Faster R-CNN's sampling, wherever the batch was made."""

    def __init__(self, dataset: CocoDetectionSet, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 hflip: float = 0.0, workers: int = 0):
        self.dataset, self.batch_size, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world
        self.hflip, self.workers = hflip, workers
        self.steps_per_epoch = max(1, len(dataset) // batch_size)

    def get(self, step: int):
        return self.finish(*self.make(step), step)

    def make(self, step: int):
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        batch = perm[pos * self.batch_size:(pos + 1) * self.batch_size]
        flips = np.random.default_rng([self.seed, step, 1]).random(len(batch)) < self.hflip  # the global batch's
        batch, flips = batch[self.rank::self.world], flips[self.rank::self.world]
        images, targets = _collate(self.dataset, batch)
        for k in np.flatnonzero(flips):
            images[k], targets[k] = _hflip(images[k], targets[k])
        return (images, targets), None

    def finish(self, x, y, step: int):
        """Faster R-CNN's proposal sampling happens in the training process: seed it per step."""
        seed_everything(step_seed(self.seed, step, -1 - self.rank))
        return x, y

    @staticmethod
    def criterion(losses: dict, _) -> torch.Tensor:
        return sum(losses.values())


def train_detector(model: nn.Module, dataset: CocoDetectionSet, steps: int | None, batch_size: int,
                   lr: float, weight_decay: float, seed: int, ckpt_dir, ctx: Context = Context(),
                   backbone_lr_scale: float = 1.0, *, epochs: float | None = None, schedule: str = "cosine",
                   lr_steps=(8, 11), warmup_steps: int | None = None, hflip: float = 0.0,
                   workers: int = 0) -> list[dict]:
    """Fine-tune through `engine.train` (AdamW, per-step schedule; checkpoints and resume like
    every training stage); returns the training log (mean loss per LOSS_WINDOW steps).

    Length: `epochs` over `dataset` when given, else `steps`. Schedule: warm-up (`warmup_steps`;
    None = min(50, a tenth of the run)), then `cosine` down to lr / 100, or `step`: lr x 0.1 from
    each of `lr_steps` (in epochs; [8, 11] of 12 is the detection 1x schedule).
    The pretrained backbone learns at `backbone_lr_scale` x lr, the new pyramid and heads at lr: a
    full learning rate on the backbone washes out what classification taught it. Warm-up: the
    fresh heads' first gradients are large next to the pretrained backbone's."""
    body = model.backbone.body
    body_ids = {id(p) for p in body.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in body_ids]},
              {"params": list(body.parameters()), "lr_scale": backbone_lr_scale}]
    batches = DetectionBatches(dataset, batch_size, seed, ctx.rank, ctx.world, hflip, workers)
    per_epoch = batches.steps_per_epoch
    total = steps if epochs is None else max(1, math.ceil(epochs * per_epoch))
    recipe = {"max_steps": total, "epochs": 1, "lr": lr, "min_lr": lr * 0.01, "weight_decay": weight_decay,
              "warmup_steps": min(50, total // 10) if warmup_steps is None else warmup_steps,
              "schedule": schedule, "decay_steps": sorted(round(e * per_epoch) for e in lr_steps),
              "log_every": min(LOSS_WINDOW, total),
              # every 100 steps on short runs, every half-percent of a long one (a COCO run: ~90k steps)
              "checkpoint_every": max(1, min(100, total), total // 200)}
    return train(model, lambda net, x, step: net(*x), batches, recipe, ckpt_dir, "detection fine-tune", ctx,
                 param_groups=groups)


def detections_to_coco(image_ids, detections: list[dict], categories: Categories | None = None) -> list[dict]:
    """torchvision detector outputs (xyxy boxes, scores, labels) -> COCO results (xywh bbox).

    `categories`: the labels' category ids (labels that name none, such as RetinaNet's unused
    background 0, are dropped); None: the labels are the category ids."""
    results = []
    for image_id, det in zip(image_ids, detections):
        boxes = det["boxes"].detach().cpu().double()
        boxes[:, 2:] -= boxes[:, :2]
        scores, labels = det["scores"].tolist(), det["labels"].tolist()
        cats = labels if categories is None else categories.category_ids(labels)
        for box, score, cat in zip(boxes.tolist(), scores, cats):
            if cat is not None:
                results.append({"image_id": int(image_id), "category_id": int(cat),
                                "bbox": box, "score": float(score)})
    return results


@torch.no_grad()
def predict(model: nn.Module, dataset: CocoDetectionSet, batch_size: int,
            device="cpu") -> list[dict]:
    """The detector's outputs on every image of `dataset`, as COCO results (in its category ids)."""
    model.eval()
    results = []
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        images, _ = _collate(dataset, indices)
        results += detections_to_coco([dataset.ids[i] for i in indices], model([im.to(device) for im in images]),
                                      dataset.categories)
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
    """Fine-tune a detector around a copy of `backbone` (a retrained model of any family) on the
    configured set's train split, evaluate on its val split: the composed set in `det_dir`
    (transfer.dataset: composed), or COCO 2017's train2017 / val2017 under transfer.root (coco;
    `det_dir` unused).

    Deterministic given `seed` (head initialisation, batch order, flips, Faster R-CNN's sampling).
    Returns AP_KEYS (percent or None), steps, train_loss_last and detector; under torchrun every
    rank fine-tunes and rank 0 evaluates and returns (the others return None).
    """
    tr = cfg_transfer
    paths = detection_paths(tr, det_dir)
    channels = backbone.in_chans
    train_set = CocoDetectionSet(*paths["train"], channels)
    val = CocoDetectionSet(*paths["val"], channels, categories=train_set.categories)
    composed = tr["dataset"] == "composed"
    min_size = tr["min_size"] or tr["canvas"]
    threads = torch.get_num_threads()
    torch.set_num_threads(tr["threads"])
    try:
        torch.manual_seed(seed)
        model = build_detector(copy.deepcopy(backbone), tr["detector"], train_set.categories.num_classes,
                               min_size, tuple(tr["object_size"]), tr["channels"],
                               max_size=tr["max_size"] or min_size, stride_range=tuple(tr["strides"]),
                               small_images=composed)
        log = train_detector(model, train_set, tr["steps"], tr["batch_size"], tr["lr"], tr["weight_decay"], seed,
                             ckpt_dir, ctx, tr["backbone_lr_scale"], epochs=tr["epochs"], schedule=tr["schedule"],
                             lr_steps=tr["lr_steps"], warmup_steps=tr["warmup_steps"], hflip=tr["hflip"],
                             workers=tr["workers"])
        if not ctx.main:
            return None
        results = predict(model, val, tr["batch_size"], ctx.device)
    finally:
        torch.set_num_threads(threads)
    metrics = coco_evaluate(val.coco, results, verbose=progress)
    return {**metrics, "steps": log[-1]["step"], "train_loss_last": float(log[-1]["loss"]),
            "detector": tr["detector"]}


def run(cfg: dict, model_path, name: str, det_dir, out, ckpt_dir, threads: int = 1) -> dict | None:
    """The transfer stage: the retrained model at `model_path` as the backbone, fine-tuned and
    COCO-evaluated (`finetune_and_evaluate`); rank 0 writes {"model": name} | result to `out` and
    returns it (other ranks return None)."""
    from .. import distributed
    from ..engine import resolve_device, set_threads
    from ..errors import ConfigError
    from ..families import build_space
    from ..io import write_json
    from ..model_file import load_model

    if cfg["transfer"]["dataset"] == "coco" and det_dir:
        raise ConfigError("transfer: --detection is for transfer.dataset: composed; coco reads transfer.root")
    detection_paths(cfg["transfer"], det_dir)  # the data is there (COCO: checked before anything loads)
    set_threads(threads)
    backbone = load_model(model_path, build_space(cfg))
    ctx = distributed.setup(resolve_device(cfg["device"]))
    result = finetune_and_evaluate(backbone, cfg["transfer"], det_dir, cfg["seed"], ckpt_dir, ctx=ctx)
    distributed.teardown(ctx)
    if result:  # rank 0 (or the only process)
        write_json(out, {"model": name} | result)
    return result
