"""Data sets and splits.

The data stage writes three disjoint splits: `train`, `search` (a stratified hold-out carved from
train, scored by the search: never the test set) and `test` (read only for final numbers).
- Fashion-MNIST is read from its four IDX files; its splits are stored as uint8 arrays.
- ImageNet-style folders (`<root>/train/<class>/*`, `<root>/val/<class>/*`) are stored as file paths
  (the held-out split: `search_per_class` training images per class, 25 in ViT-ResNAS), read on demand.
Either way `<split>.npz` holds `images` (arrays or paths) and `labels`, and `manifest.csv` records
where every image came from.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from .io import atomic_path

SPLITS = ("train", "search", "test")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
# Pixel statistics (of x / 255) for normalisation, per data set.
STATS = {"fashion_mnist": ((0.2860,), (0.3530,)),
         "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}  # timm's IMAGENET_DEFAULT_*


class DataError(RuntimeError):
    """A data set that is missing or malformed; the message says how to get or fix it."""


def _find(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"data: Fashion-MNIST file {name}[.gz] not found in {root}. Install it with "
        "'apt-get install dataset-fashion-mnist' (files land in /usr/share/datasets/fashion-mnist), "
        "or set data.root to a folder holding the four IDX files")


def check_source(cfg: dict) -> None:
    """Fail early, with the fix, when the raw data set is not where the config says."""
    root = Path(cfg["data"]["root"])
    if cfg["data"]["dataset"] == "imagenet":
        for folder in ("train", "val"):
            if not (root / folder).is_dir() or not any((root / folder).iterdir()):
                raise DataError(f"data: no class folders in {root / folder}; set data.root to an "
                                "ImageNet-style folder with train/<class>/*.JPEG and val/<class>/*.JPEG")
        return
    for img_name, lbl_name in IDX_FILES.values():
        _find(root, img_name), _find(root, lbl_name)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format MNIST and Fashion-MNIST ship in."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    try:
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(shape)
    except (struct.error, ValueError) as e:
        raise DataError(f"data: {path} is not a valid IDX file ({e}); re-download or reinstall it") from None


def read_fashion_mnist(root) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    root = Path(root)
    out = {}
    for source, (img_name, lbl_name) in IDX_FILES.items():
        images, labels = read_idx(_find(root, img_name)), read_idx(_find(root, lbl_name))
        if images.ndim != 3 or len(images) != len(labels):
            raise DataError(f"data: {root}/{img_name} and {lbl_name} do not match ({images.shape} vs "
                            f"{labels.shape}); reinstall the data set")
        out[source] = (images, labels.astype(np.int64))
    return out


def read_image_folders(root) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ImageNet-style `train/` and `val/` folders of class folders: paths and labels per source.
    Class indices follow the sorted class-folder names of train/, as torchvision's ImageFolder."""
    root = Path(root)
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    out = {}
    for source, folder in (("train", "train"), ("test", "val")):
        paths, labels = [], []
        for label, name in enumerate(classes):
            files = sorted(f for f in (root / folder / name).glob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            paths += [str(f) for f in files]
            labels += [label] * len(files)
        if not paths:
            raise DataError(f"data: no images under {root / folder}; expected {folder}/<class>/*.JPEG")
        out[source] = (np.array(paths), np.array(labels, dtype=np.int64))
    return out


def _stratified_take(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `per_class` random items of every class."""
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise DataError(f"data.search_per_class: {per_class} exceeds the {len(members)} "
                            f"training images of class {c}; lower it")
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def _limit(idx: np.ndarray, labels: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """A class-balanced random subset of at most `limit` of `idx` (all of them when limit is None)."""
    if limit is None or limit >= len(idx):
        return idx
    perm = rng.permutation(idx)
    rank = np.zeros(len(perm), dtype=np.int64)  # position of each item within its class
    for c in np.unique(labels[perm]):
        members = labels[perm] == c
        rank[members] = np.arange(members.sum())
    return np.sort(perm[np.argsort(rank, kind="stable")[:limit]])


def make_splits(sources: dict, search_per_class: int, train_limit: int | None,
                test_limit: int | None, seed: int) -> dict[str, tuple[str, np.ndarray]]:
    """Split indices per split name: (source file, indices into it)."""
    rng = np.random.default_rng(seed)
    train_labels = sources["train"][1]
    search = _stratified_take(train_labels, search_per_class, rng)
    rest = np.setdiff1d(np.arange(len(train_labels)), search)
    train = _limit(rest, train_labels, train_limit, rng)
    test_labels = sources["test"][1]
    test = _limit(np.arange(len(test_labels)), test_labels, test_limit, rng)
    return {"train": ("train", train), "search": ("train", search), "test": ("test", test)}


def prepare(cfg: dict, out_dir) -> pd.DataFrame:
    """The data stage: read the raw set, write `<split>.npz` and `manifest.csv`; returns the manifest."""
    data = cfg["data"]
    read = read_image_folders if data["dataset"] == "imagenet" else read_fashion_mnist
    sources = read(data["root"])
    splits = make_splits(sources, data["search_per_class"], data["train_limit"],
                         data["test_limit"], cfg["seed"])
    out_dir = Path(out_dir)
    frames = []
    for split, (source, idx) in splits.items():
        images, labels = sources[source]
        with atomic_path(out_dir / f"{split}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, images=images[idx], labels=labels[idx])
        frames.append(pd.DataFrame({"split": split, "source": source, "index": idx,
                                    "label": labels[idx]}))
    manifest = pd.concat(frames, ignore_index=True)
    with atomic_path(out_dir / "manifest.csv") as tmp:
        manifest.to_csv(tmp, index=False)
    return manifest


@dataclass(frozen=True)
class Split:
    """One split's images (uint8 arrays in memory, or file paths) with labels and pixel statistics."""

    images: np.ndarray
    labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return self.images.dtype == np.uint8

    @property
    def channels(self) -> int:
        return len(self.mean)

    def pil(self, i: int) -> Image.Image:
        if self.in_memory:
            return Image.fromarray(self.images[i])
        with Image.open(self.images[i]) as img:
            return img.convert("RGB" if self.channels == 3 else "L")

    def head(self, n: int | None) -> "Split":
        """The first `n` items (all when n is None)."""
        return Split(self.images[:n], self.labels[:n], self.mean, self.std)


def load_split(data_dir, split: str, dataset: str = "fashion_mnist") -> Split:
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise DataError(f"data: {path} is missing; run the data stage first (snakemake prepare_data)")
    with np.load(path) as z:
        return Split(z["images"], z["labels"], *STATS[dataset])
