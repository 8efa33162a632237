"""A small detection set composed from the classification set's items (Fashion-MNIST's grey ones,
or CIFAR-10's RGB images): several items per black canvas, each resized, placed without overlap
and boxed tightly, written as PNGs plus COCO instances JSON.

COCO format keeps the fine-tuning and evaluation code the same as for a real COCO 2017 run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]

# Pixels at or below this value are background: it keeps the dark margins of the 28x28 items, and
# the faint halo bilinear resizing leaves, out of the boxes.
THRESHOLD = 16
PLACE_TRIES = 50  # placements tried per item before it is skipped (the canvas is too full)


def _cropped_item(image: np.ndarray, side: int) -> np.ndarray | None:
    """The item resized to `side` x `side` and cropped to its pixels above THRESHOLD (None if none).

    Pasting only the crop makes the box equal to the extent of every non-zero pixel pasted.
    """
    resized = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))
    lit = resized > THRESHOLD
    lit = lit.any(axis=2) if lit.ndim == 3 else lit  # RGB: a pixel is lit when any channel is
    rows = np.flatnonzero(lit.any(axis=1))
    cols = np.flatnonzero(lit.any(axis=0))
    if rows.size == 0:
        return None
    return resized[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _place(rng: np.random.Generator, w: int, h: int, canvas: int,
           placed: list[tuple[int, int, int, int]]) -> tuple[int, int] | None:
    """A random top-left corner where a w x h box overlaps no placed box (rejection sampling)."""
    for _ in range(PLACE_TRIES):
        x, y = int(rng.integers(canvas - w + 1)), int(rng.integers(canvas - h + 1))
        if not any(x < px + pw and px < x + w and y < py + ph and py < y + h
                   for px, py, pw, ph in placed):
            return x, y
    return None


def compose_split(images: np.ndarray, labels: np.ndarray, n_images: int, canvas: int,
                  objects: tuple[int, int], object_size: tuple[int, int],
                  seed: int, names: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """`n_images` canvases with objects[0]..objects[1] items each, and their COCO instances dict.

    images: uint8 [N, H, W] grey items or [N, H, W, 3] RGB ones (the canvases follow); labels: int
    [N] (category id = label + 1), named by `names` (None: Fashion-MNIST's classes).
    Items that cannot be placed without overlap after PLACE_TRIES tries are skipped, so a crowded
    canvas can hold fewer than objects[0] items.
    """
    lo, hi = object_size
    if not 1 <= lo <= hi <= canvas:
        raise ValueError(f"object_size {list(object_size)} must lie within [1, canvas={canvas}]")
    if not 1 <= objects[0] <= objects[1]:
        raise ValueError(f"objects {list(objects)} must be [min, max] with 1 <= min <= max")
    rng = np.random.default_rng(seed)
    canvases = np.zeros((n_images, canvas, canvas) + images.shape[3:], dtype=np.uint8)
    coco_images, annotations = [], []
    for i in range(n_images):
        image_id = i + 1  # COCO ids are positive; COCOeval treats a matched id 0 as unmatched
        coco_images.append({"id": image_id, "file_name": f"{image_id:06d}.png",
                            "width": canvas, "height": canvas})
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(rng.integers(objects[0], objects[1] + 1)):
            k = rng.integers(len(images))
            item = _cropped_item(images[k], int(rng.integers(lo, hi + 1)))
            if item is None:
                continue
            h, w = item.shape[:2]
            corner = _place(rng, w, h, canvas, placed)
            if corner is None:
                continue
            x, y = corner
            placed.append((x, y, w, h))
            canvases[i, y:y + h, x:x + w] = item
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(labels[k]) + 1, "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": 0})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(names or FASHION_CLASSES)]
    what = "Fashion-MNIST items" if names is None else f"{len(names)}-class images"
    coco = {"info": {"description": f"{what} composed on canvases"},
            "images": coco_images, "annotations": annotations, "categories": categories}
    return canvases, coco


def write_split(out_dir, split: str, canvases: np.ndarray, coco: dict) -> Path:
    """PNGs into out_dir/<split>/ and out_dir/instances_<split>.json; returns the JSON path.

    Every file is written under a temporary name and renamed, the JSON last: its presence means
    the split is complete, so an interrupted run is never mistaken for a finished one.
    """
    out_dir = Path(out_dir)
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    for pixels, info in zip(canvases, coco["images"]):
        path = image_dir / info["file_name"]
        tmp = path.with_name(path.name + ".tmp")
        Image.fromarray(pixels).save(tmp, format="PNG")
        os.replace(tmp, path)
    ann_path = out_dir / f"instances_{split}.json"
    tmp = ann_path.with_name(ann_path.name + ".tmp")
    tmp.write_text(json.dumps(coco))
    os.replace(tmp, ann_path)
    return ann_path


def run(cfg: dict, data_dir, out_dir) -> list[tuple[str, int, int]]:
    """The compose-detection stage: `transfer.train_images` canvases from the train split and
    `transfer.val_images` from the test split, written to `out_dir`. Returns (split, canvases,
    objects) per split."""
    from ..data import CLASS_NAMES, load_split

    tr, written = cfg["transfer"], []
    for split, source, n in (("train", "train", tr["train_images"]), ("val", "test", tr["val_images"])):
        objects = load_split(data_dir, source)  # val objects come from the test split
        canvases, coco = compose_split(objects.images, objects.labels, n, tr["canvas"], tuple(tr["objects"]),
                                       tuple(tr["object_size"]), seed=cfg["seed"] + (split == "val"),
                                       names=CLASS_NAMES.get(cfg["data"]["dataset"]))
        write_split(out_dir, split, canvases, coco)
        written.append((split, n, len(coco["annotations"])))
    return written
