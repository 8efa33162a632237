"""Tiny data sets in the real formats, for tests and for trying the paper-scale paths on a laptop:
an ImageNet-style tree of real JPEGs (with one corrupt file) here, a COCO 2017-style set in
vitnas.detection.fixture. `vitnas make-fixtures --out DIR` writes both."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

CORRUPT_NAME = "corrupt.JPEG"


def _class_image(rng: np.random.Generator, c: int, classes: int, size: tuple[int, int]) -> Image.Image:
    """A learnable image of class `c`: noise under a bright band whose hue and position say the class."""
    h, w = size
    pixels = rng.integers(0, 96, (h, w, 3), dtype=np.uint8)
    hue = np.array([255 * (c % 3 == 0), 255 * (c % 3 == 1), 255 * (c % 3 == 2)], dtype=np.uint8)
    band = slice(c * h // classes, (c + 1) * h // classes)
    pixels[band] = np.maximum(pixels[band], hue)
    return Image.fromarray(pixels)


def write_tiny_imagenet(root, classes: int = 4, train_per_class: int = 12, val_per_class: int = 4,
                        size: tuple[int, int] = (48, 56), corrupt: int = 1, seed: int = 0) -> dict:
    """`root/train/<wnid>/<wnid>_<i>.JPEG` and `root/val/<wnid>/...`: real JPEGs of `size` (h, w),
    `classes` classes named like ImageNet's (n00000000, n00000001, ...). `corrupt` training images
    of the first class are cut-off JPEGs (a header and nothing else). Returns what was written."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    wnids = [f"n{c:08d}" for c in range(classes)]
    for folder, n in (("train", train_per_class), ("val", val_per_class)):
        for c, wnid in enumerate(wnids):
            (root / folder / wnid).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _class_image(rng, c, classes, size).save(root / folder / wnid / f"{wnid}_{i}.JPEG", quality=90)
    corrupt_files = []
    for k in range(corrupt):
        buf = io.BytesIO()
        _class_image(rng, 0, classes, size).save(buf, format="JPEG", quality=90)
        path = root / "train" / wnids[0] / f"{wnids[0]}_{k}_{CORRUPT_NAME}"
        path.write_bytes(buf.getvalue()[:len(buf.getvalue()) // 3])  # truncated mid-scan
        corrupt_files.append(str(path))
    return {"root": str(root), "classes": wnids, "corrupt": corrupt_files,
            "train": classes * train_per_class + corrupt, "val": classes * val_per_class}
