"""A torch Dataset over any COCO-format folder (images + instances JSON), in the form torchvision's
detectors take: a float image in [0, 1] and a target dict of xyxy boxes and labels."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset


def load_coco(ann_file) -> COCO:
    """pycocotools' COCO index, without its "loading annotations..." prints on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


def coco_from_dict(dataset: dict) -> COCO:
    """A COCO index over an in-memory instances dict (no file needed)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetectionSet(Dataset):
    """Item i: (image float [C, H, W] in [0, 1], {"boxes": [K, 4] xyxy, "labels": [K], "image_id"}).

    Labels are the COCO category ids as they are (1..90 for COCO 2017, with gaps), so a detector
    for it needs max id + 1 outputs. Crowd regions and degenerate boxes are left out: torchvision's
    detectors neither ignore crowds nor accept zero-size boxes. Images without annotations give
    empty [0, 4] boxes, which the detectors train on as background.
    """

    def __init__(self, image_dir, ann_file, channels: int = 1):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), not {channels}")
        self.image_dir = Path(image_dir)
        self.coco = load_coco(ann_file)
        self.ids = sorted(self.coco.getImgIds())
        self.mode = "L" if channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        image_id = self.ids[i]
        info = self.coco.loadImgs(image_id)[0]
        with Image.open(self.image_dir / info["file_name"]) as im:
            pixels = np.asarray(im.convert(self.mode), dtype=np.float32) / 255.0
        pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)  # grey [H, W] -> [H, W, 1]
        image = torch.from_numpy(pixels).permute(2, 0, 1)
        boxes, labels = [], []
        for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id)):
            x, y, w, h = ann["bbox"]
            if ann.get("iscrowd", 0) or w <= 0 or h <= 0:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(ann["category_id"])
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor(labels, dtype=torch.int64),
                  "image_id": image_id}
        return image.contiguous(), target
