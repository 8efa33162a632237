"""A torch Dataset over any COCO-format folder (images + instances JSON), in the form torchvision's
detectors take: a float image in [0, 1] and a target dict of xyxy boxes and contiguous labels.

Where the sets live: `detection_paths` (the composed set's folder, or a COCO 2017 root checked at
the start of the job). COCO's category ids (1..90 with gaps) become labels 1..K for the detector
and go back to category ids for COCOeval (`Categories`); the composed set's ids are already 1..10.
"""
from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from ..config import ConfigError
from ..data import DataError

COCO_KEYS = ("images", "annotations", "categories")
# COCO 2017's layout under transfer.root: split -> (image folder, instances file).
COCO_SPLITS = {"train": ("train2017", "annotations/instances_train2017.json"),
               "val": ("val2017", "annotations/instances_val2017.json")}


def detection_paths(cfg_transfer: dict, det_dir=None) -> dict[str, tuple[Path, Path]]:
    """{"train": (image folder, instances JSON), "val": (...)} of the configured detection set.

    composed: the folder compose-detection wrote (`det_dir`). coco: `transfer.root`, checked here
    (every missing folder or file named at once) so a transfer job stops before it loads anything.
    """
    if cfg_transfer["dataset"] == "composed":
        if det_dir is None:
            raise ConfigError("transfer: the composed detection set needs its folder (--detection, written by "
                              "compose-detection); or set transfer.dataset: coco with transfer.root")
        det_dir = Path(det_dir)
        return {s: (det_dir / s, det_dir / f"instances_{s}.json") for s in ("train", "val")}
    if not cfg_transfer.get("root"):
        raise ConfigError("transfer.root: not set; with transfer.dataset: coco it must name the COCO 2017 "
                          "folder holding train2017/, val2017/ and annotations/instances_{train,val}2017.json")
    root = Path(cfg_transfer["root"])
    paths = {s: (root / images, root / ann) for s, (images, ann) in COCO_SPLITS.items()}
    missing = [f"{images.name}/" for images, _ in paths.values() if not images.is_dir()]
    missing += [str(ann.relative_to(root)) for _, ann in paths.values() if not ann.is_file()]
    if missing:
        raise DataError(f"transfer.root: {root} lacks {', '.join(missing)}; set transfer.root to the COCO 2017 "
                        "folder holding train2017/, val2017/ and annotations/instances_{train,val}2017.json "
                        "(from https://cocodataset.org/#download)")
    return paths


def _check_instances(data, path) -> None:
    """The structure pycocotools and the detector rely on, as one DataError naming file and fix."""
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in COCO_KEYS):
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"transfer: {path} is not a COCO instances file (needs the lists \"images\", "
                        f"\"annotations\" and \"categories\"; has {have}); re-download or regenerate it")
    for kind, keys in (("images", ("id", "file_name")), ("categories", ("id",)),
                       ("annotations", ("id", "image_id", "category_id", "bbox"))):
        for i, item in enumerate(data[kind]):
            if not isinstance(item, dict) or any(k not in item for k in keys):
                raise DataError(f"transfer: {path}: {kind}[{i}] lacks one of the keys {', '.join(keys)}; "
                                "fix the entry or regenerate the file")
    categories = {c["id"] for c in data["categories"]}
    images = {im["id"] for im in data["images"]}
    for ann in data["annotations"]:
        if ann["category_id"] not in categories:
            raise DataError(f"transfer: {path}: annotation {ann['id']} uses category_id {ann['category_id']}, "
                            "which \"categories\" does not define; add that category or drop the annotation")
        if ann["image_id"] not in images:
            raise DataError(f"transfer: {path}: annotation {ann['id']} refers to image_id {ann['image_id']}, "
                            "which \"images\" does not list; add that image or drop the annotation")


def load_coco(ann_file) -> COCO:
    """pycocotools' COCO index of an instances file, checked first: a file that is missing, is not
    JSON or lacks what COCO needs raises one DataError naming the file and the fix (and
    pycocotools' "loading annotations..." prints stay off stdout)."""
    path = Path(ann_file)
    if not path.is_file():
        raise DataError(f"transfer: annotations file {path} not found; write it (compose-detection) or point "
                        "transfer.root at a COCO 2017 folder")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"transfer: {path} is not valid JSON ({str(e).splitlines()[0]}); "
                        "re-download or regenerate the annotations file") from None
    _check_instances(data, path)
    return coco_from_dict(data)


def coco_from_dict(dataset: dict) -> COCO:
    """A COCO index over an in-memory instances dict (no file needed)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@dataclass(frozen=True)
class Categories:
    """COCO category ids <-> the detector's contiguous labels: label k (1..K) is `ids[k - 1]`
    (sorted ids; torchvision keeps label 0 for the background)."""

    ids: tuple[int, ...]

    @classmethod
    def of(cls, coco: COCO) -> "Categories":
        return cls(tuple(sorted(coco.getCatIds())))

    @property
    def num_classes(self) -> int:
        return len(self.ids)

    def labels(self, category_ids) -> list[int]:
        index = {c: k + 1 for k, c in enumerate(self.ids)}
        return [index[c] for c in category_ids]

    def category_ids(self, labels) -> list[int | None]:
        """The category id of each label; None for a label that names none (the background, 0)."""
        return [self.ids[k - 1] if 1 <= k <= len(self.ids) else None for k in labels]


class CocoDetectionSet(Dataset):
    """Item i: (image float [C, H, W] in [0, 1], {"boxes": [K, 4] xyxy, "labels": [K], "image_id"}).

    Labels are contiguous, 1..categories.num_classes (`Categories`: COCO 2017's ids 1..90 with
    gaps become 1..80); pass the training set's `categories` to a validation set so both speak the
    detector's labels. Crowd regions and degenerate boxes are left out: torchvision's detectors
    neither ignore crowds nor accept zero-size boxes. Images without annotations give empty [0, 4]
    boxes, which the detectors train on as background.
    """

    def __init__(self, image_dir, ann_file, channels: int = 1, categories: Categories | None = None):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), not {channels}")
        self.image_dir = Path(image_dir)
        self.coco = load_coco(ann_file)
        self.categories = categories or Categories.of(self.coco)
        unknown = sorted(set(self.coco.getCatIds()) - set(self.categories.ids))
        if unknown:
            raise DataError(f"transfer: {ann_file} has categories {unknown} that the training set does not; "
                            "use the same \"categories\" list in both annotation files")
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
        boxes, cats = [], []
        for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id)):
            x, y, w, h = ann["bbox"]
            if ann.get("iscrowd", 0) or w <= 0 or h <= 0:
                continue
            boxes.append([x, y, x + w, y + h])
            cats.append(ann["category_id"])
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor(self.categories.labels(cats), dtype=torch.int64),
                  "image_id": image_id}
        return image.contiguous(), target
