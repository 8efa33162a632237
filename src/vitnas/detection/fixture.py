"""A tiny COCO-2017-format tree for tests and trial runs: `train2017/` and `val2017/` with real
JPEGs (coloured shapes drawn with PIL on noise, one colour and shape per category, so a detector
can learn them) and `annotations/instances_{train,val}2017.json`.

Like COCO 2017 it has category ids with gaps (1, 3, 7, 90), a crowd region (iscrowd 1, an
uncompressed-RLE segmentation) and images without annotations; images are landscape and portrait.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# id -> (name, RGB colour, shape)
CATEGORIES = {1: ("red square", (230, 40, 40), "square"), 3: ("green disc", (40, 220, 60), "disc"),
              7: ("blue triangle", (50, 80, 240), "triangle"), 90: ("yellow bar", (240, 220, 40), "bar")}
SIZES = ((96, 128), (128, 96))  # (height, width), alternating
OBJECT_SIDE = (16, 40)


def _free_box(rng, width, height, w, h, placed, tries=50):
    for _ in range(tries):
        x, y = int(rng.integers(width - w + 1)), int(rng.integers(height - h + 1))
        if not any(x < px + pw and px < x + w and y < py + ph and py < y + h for px, py, pw, ph in placed):
            return x, y
    return None


def _rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (column-major runs, starting with zeros), as crowd regions use."""
    flat = np.asfortranarray(mask).ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], edges])).tolist()
    return {"counts": counts, "size": list(mask.shape)}


def _draw(draw: ImageDraw.ImageDraw, shape: str, colour, x, y, w, h) -> list[float]:
    """Draw one object filling the box (x, y, w, h); returns its polygon."""
    x1, y1 = x + w - 1, y + h - 1
    if shape == "triangle":
        poly = [(x, y1), (x1, y1), (x + (w - 1) / 2, y)]
        draw.polygon(poly, fill=colour)
    elif shape == "disc":
        draw.ellipse([x, y, x1, y1], fill=colour)
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        poly = list(zip(x + (w - 1) / 2 * (1 + np.cos(t)), y + (h - 1) / 2 * (1 + np.sin(t))))
    else:  # square, bar
        draw.rectangle([x, y, x1, y1], fill=colour)
        poly = [(x, y), (x1, y), (x1, y1), (x, y1)]
    return [float(v) for p in poly for v in p]


def tiny_coco_split(n_images: int, seed: int, first_id: int = 1, objects: tuple[int, int] = (1, 3),
                    crowd: bool = True, empty: int = 1) -> tuple[list[np.ndarray], dict]:
    """`n_images` RGB images and their COCO instances dict. The first image also holds a crowd
    region (a cluster of dots) when `crowd`; the last `empty` images hold no objects."""
    rng = np.random.default_rng(seed)
    ids = sorted(CATEGORIES)
    pictures, images, annotations = [], [], []
    for i in range(n_images):
        image_id = first_id + i
        height, width = SIZES[i % len(SIZES)]
        pixels = rng.integers(0, 110, size=(height, width, 3), dtype=np.uint8)  # dark noise
        img = Image.fromarray(pixels)
        draw = ImageDraw.Draw(img)
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": width, "height": height,
                       "license": 0})
        placed: list[tuple[int, int, int, int]] = []
        if crowd and i == 0:  # a crowd: dots of one category in a region, annotated as one
            w, h = 40, 30
            x, y = _free_box(rng, width, height, w, h, placed)
            mask = np.zeros((height, width), dtype=np.uint8)
            name, colour, _ = CATEGORIES[ids[0]]
            for _ in range(8):
                cx, cy = x + int(rng.integers(2, w - 2)), y + int(rng.integers(2, h - 2))
                draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
                mask[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3] = 1
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
            placed.append((x, y, w, h))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[0],
                                "bbox": box, "area": int(mask.sum()), "iscrowd": 1,
                                "segmentation": _rle(mask)})
        n = 0 if i >= n_images - empty else int(rng.integers(objects[0], objects[1] + 1))
        for _ in range(n):
            cat = ids[int(rng.integers(len(ids)))]
            _, colour, shape = CATEGORIES[cat]
            side = int(rng.integers(OBJECT_SIDE[0], OBJECT_SIDE[1] + 1))
            w, h = (side, max(side // 3, 6)) if shape == "bar" else (side, side)
            corner = _free_box(rng, width, height, w, h, placed)
            if corner is None:
                continue
            x, y = corner
            placed.append((x, y, w, h))
            poly = _draw(draw, shape, colour, x, y, w, h)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "segmentation": [poly]})
        pictures.append(np.asarray(img))
    categories = [{"id": c, "name": name, "supercategory": "shape"} for c, (name, _, _) in CATEGORIES.items()]
    coco = {"info": {"description": "tiny COCO-format fixture: shapes on noise"}, "licenses": [],
            "images": images, "annotations": annotations, "categories": categories}
    return pictures, coco


def write_tiny_coco(out_dir, seed: int = 0, train_images: int = 8, val_images: int = 4) -> Path:
    """A COCO 2017 tree under `out_dir` (train2017/, val2017/, annotations/); returns out_dir.

    Files are written under temporary names and renamed, the annotation files last."""
    out = Path(out_dir)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    splits = {"train": tiny_coco_split(train_images, seed, first_id=1),
              "val": tiny_coco_split(val_images, seed + 1, first_id=100_001)}
    for split, (pictures, coco) in splits.items():
        folder = out / f"{split}2017"
        folder.mkdir(exist_ok=True)
        for pixels, info in zip(pictures, coco["images"]):
            path = folder / info["file_name"]
            tmp = path.with_name(path.name + ".tmp")
            Image.fromarray(pixels).save(tmp, format="JPEG", quality=92)
            os.replace(tmp, path)
    for split, (_, coco) in splits.items():
        path = out / "annotations" / f"instances_{split}2017.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(coco))
        os.replace(tmp, path)
    return out
