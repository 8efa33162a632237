"""Data sets and splits.

The data stage writes three disjoint splits: `train`, `search` (a stratified hold-out carved from
train, scored by the search: never the test set) and `test` (read only for final numbers).
- Fashion-MNIST is read from its four IDX files; its splits are stored as uint8 arrays.
- CIFAR-10 is read from torchvision's pickled batches or from a JPEG tree (`vitnas.cifar`), decoded
  once here; its splits are stored as uint8 arrays too.
- ImageNet-style folders (`<root>/train/<class>/*`, `<root>/val/<class>/*`) are stored as file paths
  (the held-out split: `search_per_class` training images per class, 25 in ViT-ResNAS), read on demand.
  `data.classes` keeps a class subset (ImageNet-100).
Either way `<split>.npz` holds `images` (arrays or paths) and `labels`, `manifest.csv` records
where every image came from, and `held_out.txt` lists the held-out images (one id per line: a path
under train/, or an index into the IDX file or CIFAR-10's training batches), which `data.held_out_list` can hand to another run.
"""
from __future__ import annotations

import gzip
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from . import cifar
from .errors import CorruptImage, DataError
from .io import atomic_path

SPLITS = ("train", "search", "test")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
# Pixel statistics (of x / 255) for normalisation, per data set.
# CIFAR-10's: the 50,000 original training images' per-channel mean and standard deviation (over
# every pixel); the JPEG copy measures (0.4913, 0.4821, 0.4465) and (0.2452, 0.2428, 0.2606), and
# uses the originals' values so that both copies are normalised alike.
STATS = {"fashion_mnist": ((0.2860,), (0.3530,)),
         "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # timm's IMAGENET_DEFAULT_*
         "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}

# Class names by label, where the prepared arrays need them (the composed detection set's categories).
CLASS_NAMES = {"cifar10": list(cifar.CLASSES)}


def _find(root: Path, name: str) -> Path:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"data: Fashion-MNIST file {name}[.gz] not found in {root}. Install it with "
        "'apt-get install dataset-fashion-mnist' (files land in /usr/share/datasets/fashion-mnist), "
        "or set data.root to a folder holding the four IDX files")


def class_subset(data: dict) -> list[str] | None:
    """The class folders `data.classes` keeps (a list, or a file with one name per line; `#`
    starts a comment), in sorted order; None = every class."""
    classes = data.get("classes")
    if classes is None:
        return None
    if isinstance(classes, str):
        path = Path(classes)
        if not path.is_file():
            raise DataError(f"data.classes: no such file {classes}; give a file with one class folder name "
                            "per line (e.g. config/imagenet100.txt) or a list of names")
        classes = [w for line in path.read_text().splitlines() for w in line.split("#", 1)[0].split()]
    if not classes:
        raise DataError("data.classes: the class list is empty; list the class folders to keep, or use null")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise DataError(f"data.classes: {', '.join(repeated[:5])} listed twice; list each class once")
    return sorted(str(c) for c in classes)


def check_source(cfg: dict) -> None:
    """Fail early, with the fix, when the raw data set is not where the config says."""
    root = Path(cfg["data"]["root"])
    if cfg["data"]["dataset"] == "imagenet":
        for folder in ("train", "val"):
            if not (root / folder).is_dir() or not any((root / folder).iterdir()):
                raise DataError(f"data: no class folders in {root / folder}; set data.root to an "
                                "ImageNet-style folder with train/<class>/*.JPEG and val/<class>/*.JPEG")
        wanted = class_subset(cfg["data"])
        if wanted:
            missing = [c for c in wanted if not (root / "train" / c).is_dir()]
            if missing:
                raise DataError(f"data.classes: {len(missing)} class(es) have no folder in {root / 'train'} "
                                f"({', '.join(missing[:3])}...); check the list against data.root")
        return
    if cfg["data"]["dataset"] == "cifar10":
        if cfg["data"].get("classes") is not None:
            raise DataError("data.classes: a class subset is for ImageNet folders; remove it (or set it to null) "
                            "for cifar10")
        cifar.layout(root)
        return
    for img_name, lbl_name in IDX_FILES.values():
        _find(root, img_name), _find(root, lbl_name)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format MNIST and Fashion-MNIST ship in."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, OSError, zlib.error) as e:  # a cut-off download, a damaged .gz
        raise DataError(f"data: {path} is truncated or corrupt ({type(e).__name__}: {e}); re-download it, "
                        "or reinstall dataset-fashion-mnist") from None
    try:
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        expected, found = int(np.prod(shape)), len(raw) - 4 - 4 * ndim
        if found != expected:
            raise ValueError(f"truncated: its header promises {expected} bytes of data, it holds {found}")
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(shape)
    except (struct.error, ValueError) as e:
        raise DataError(f"data: {path} is not a valid IDX file ({e}); re-download or reinstall it") from None


def idx_length(path: Path) -> int:
    """The item count in an IDX file's header, without reading the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return struct.unpack(">HBBI", f.read(8))[3]
    except (EOFError, OSError, zlib.error, struct.error) as e:
        raise DataError(f"data: {path} is truncated or corrupt ({type(e).__name__}); re-download it, "
                        "or reinstall dataset-fashion-mnist") from None


def read_fashion_mnist(root) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    root = Path(root)
    out = {}
    for source, (img_name, lbl_name) in IDX_FILES.items():
        images, labels = read_idx(_find(root, img_name)), read_idx(_find(root, lbl_name))
        if images.ndim != 3 or len(images) != len(labels):
            raise DataError(f"data: {root}/{img_name} and {lbl_name} do not match ({images.shape} vs "
                            f"{labels.shape}); reinstall the data set")
        # ids: the image's index in its IDX file (what held_out.txt lists)
        out[source] = (images, labels.astype(np.int64), np.arange(len(labels)).astype(str))
    return out


def _class_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def read_image_folders(root, classes: list[str] | None = None) -> dict[str, tuple[np.ndarray, ...]]:
    """ImageNet-style `train/` and `val/` folders of class folders: (paths, labels, ids) per source,
    ids being paths relative to the source folder. Class indices follow the sorted class-folder
    names of train/ (as torchvision's ImageFolder), or of `classes` when a subset is kept."""
    root = Path(root)
    classes = classes or sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    out = {}
    for source, folder in (("train", "train"), ("test", "val")):
        paths, labels = [], []
        for label, name in enumerate(classes):
            files = _class_files(root / folder / name) if (root / folder / name).is_dir() else []
            paths += [str(f) for f in files]
            labels += [label] * len(files)
        if not paths:
            raise DataError(f"data: no images under {root / folder}; expected {folder}/<class>/*.JPEG")
        ids = np.array([str(Path(p).relative_to(root / folder)) for p in paths])
        out[source] = (np.array(paths), np.array(labels, dtype=np.int64), ids)
    return out


def read_held_out_list(path, ids: np.ndarray, classes: list[str] | None = None) -> np.ndarray:
    """Indices (into the training source, whose ids are `ids`) of the images a held-out list names.

    A line is an id as `held_out.txt` writes it: a path under train/ (`n01440764/x.JPEG`), only the
    file name (ViT-ResNAS's published list: `n01440764_10026.JPEG`), or an index into the IDX file.
    With a class subset (`classes`), lines of the other classes are dropped; any other line that
    names no training image stops with the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.held_out_list: no such file {path}; give a file with one training image per "
                        "line (a held_out.txt written by the data stage), or null")
    entries = [line.split()[0] for line in path.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise DataError(f"data.held_out_list: {path} lists no images; give a non-empty list, or null")
    position = {v: i for i, v in enumerate(ids)}
    by_name = {os.path.basename(v): i for i, v in enumerate(ids)}
    found = [position.get(e, by_name.get(os.path.basename(e))) for e in entries]

    def other_class(entry: str) -> bool:  # ImageNet ids: <wnid>/<file>, files named <wnid>_<n>
        wnid = entry.split("/", 1)[0] if "/" in entry else os.path.basename(entry).split("_", 1)[0]
        return classes is not None and wnid not in classes

    unknown = [e for e, i in zip(entries, found) if i is None and not other_class(e)]
    if unknown:
        raise DataError(f"data.held_out_list: {len(unknown)} of the {len(entries)} images {path} lists are not in "
                        f"the training set ({', '.join(unknown[:3])}); check data.root and the list")
    kept = np.unique([i for i in found if i is not None])
    if not len(kept):
        raise DataError(f"data.held_out_list: none of the images {path} lists belongs to data.classes; "
                        "check the list against the class subset")
    return kept


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


def balanced_subset(labels: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of a class-balanced random subset of at most `limit` of `labels` (all of
    them when limit is None): every class gives its k-th random item before any gives its (k+1)-th."""
    idx = np.arange(len(labels))
    if limit is None or limit >= len(idx):
        return idx
    perm = rng.permutation(idx)
    rank = np.zeros(len(perm), dtype=np.int64)  # position of each item within its class
    for c in np.unique(labels[perm]):
        members = labels[perm] == c
        rank[members] = np.arange(members.sum())
    return np.sort(perm[np.argsort(rank, kind="stable")[:limit]])


def make_splits(sources: dict, search_per_class: int, train_limit: int | None,
                test_limit: int | None, seed: int, held_out: np.ndarray | None = None) -> dict[str, tuple[str, np.ndarray]]:
    """Split indices per split name: (source file, indices into it). `held_out`: the search split's
    indices, as given (a held-out list), instead of `search_per_class` random images per class."""
    rng = np.random.default_rng(seed)
    train_labels = sources["train"][1]
    search = _stratified_take(train_labels, search_per_class, rng) if held_out is None else held_out
    rest = np.setdiff1d(np.arange(len(train_labels)), search)
    train = rest[balanced_subset(train_labels[rest], train_limit, rng)]
    test_labels = sources["test"][1]
    test = balanced_subset(test_labels, test_limit, rng)
    return {"train": ("train", train), "search": ("train", search), "test": ("test", test)}


def read_cifar10(root, max_corrupt: float) -> dict[str, tuple[np.ndarray, ...]]:
    """CIFAR-10's train and test sources from either copy (`vitnas.cifar`); corrupt files of the JPEG
    tree are left out with a warning each, up to `max_corrupt` of a source."""
    kind, folder = cifar.layout(root)
    if kind == "pickles":
        return cifar.read_pickles(folder)
    sources, corrupt = cifar.read_tree(folder)
    for source, errors in corrupt.items():
        BadImages(source, len(sources[source][1]) + len(errors), max_corrupt).add(errors)
    return sources


def read_sources(data: dict) -> dict:
    if data["dataset"] == "imagenet":
        return read_image_folders(data["root"], class_subset(data))
    if data["dataset"] == "cifar10":
        check_source({"data": data})
        return read_cifar10(data["root"], data["max_corrupt_fraction"])
    return read_fashion_mnist(data["root"])


def prepare(cfg: dict, out_dir) -> pd.DataFrame:
    """The data stage: read the raw set, write `<split>.npz`, `manifest.csv` and `held_out.txt`;
    returns the manifest."""
    data = cfg["data"]
    sources = read_sources(data)
    held_out = None
    if data["held_out_list"]:
        held_out = read_held_out_list(data["held_out_list"], sources["train"][2], class_subset(data))
    splits = make_splits(sources, data["search_per_class"], data["train_limit"],
                         data["test_limit"], cfg["seed"], held_out)
    out_dir = Path(out_dir)
    frames = []
    for split, (source, idx) in splits.items():
        images, labels, ids = sources[source]
        with atomic_path(out_dir / f"{split}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, images=images[idx], labels=labels[idx])
        frames.append(pd.DataFrame({"split": split, "source": source, "index": idx, "id": ids[idx],
                                    "label": labels[idx]}))
    with atomic_path(out_dir / "held_out.txt") as tmp:
        tmp.write_text("".join(f"{i}\n" for i in sources["train"][2][splits["search"][1]]))
    manifest = pd.concat(frames, ignore_index=True)
    with atomic_path(out_dir / "manifest.csv") as tmp:
        manifest.to_csv(tmp, index=False)
    return manifest


def split_sizes(cfg: dict, data_dir=None) -> dict[str, int] | None:
    """How many images each split holds (or will hold once prepared): from the prepared manifest
    when there is one, else from the raw data (IDX headers, or a listing of the class folders).
    None when the raw data is not there (a dry run on a machine without it)."""
    manifest = Path(data_dir or "", "manifest.csv") if data_dir else None
    if manifest is not None and manifest.is_file():
        return pd.read_csv(manifest, usecols=["split"])["split"].value_counts().to_dict()
    data = cfg["data"]
    try:
        check_source(cfg)
    except DataError:
        return None
    if data["dataset"] == "imagenet":
        root = Path(data["root"])
        classes = class_subset(data) or sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
        n_classes = len(classes)
        n_train = sum(len(_class_files(root / "train" / c)) for c in classes)
        n_test = sum(len(_class_files(root / "val" / c)) for c in classes if (root / "val" / c).is_dir())
    elif data["dataset"] == "cifar10":
        n_classes = 10
        n_train, n_test = cifar.counts(data["root"]).values()
    else:
        root = Path(data["root"])
        n_classes = 10
        n_train, n_test = (idx_length(_find(root, IDX_FILES[s][1])) for s in ("train", "test"))
    if not n_train:  # class folders without images: the data stage says so
        return None
    n_search = n_classes * data["search_per_class"]
    if data["held_out_list"] and Path(data["held_out_list"]).is_file():
        n_search = sum(1 for line in Path(data["held_out_list"]).read_text().splitlines() if line.strip())
    n_rest = max(0, n_train - n_search)
    return {"train": min(n_rest, data["train_limit"] or n_rest), "search": n_search,
            "test": min(n_test, data["test_limit"] or n_test)}


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
        """Image `i` as a PIL image; CorruptImage when its file does not decode."""
        if self.in_memory:
            return Image.fromarray(self.images[i])
        try:
            with Image.open(self.images[i]) as img:
                return img.convert("RGB" if self.channels == 3 else "L")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise CorruptImage(f"{self.images[i]}: {e}") from None

    def subset(self, n: int | None, seed: int) -> "Split":
        """A class-balanced random subset of `n` items, fixed by `seed` (all of them when n is None
        or n >= len): what the search, the health check and the ranking score on."""
        keep = balanced_subset(self.labels, n, np.random.default_rng([seed, 0x5EA7C4]))
        return Split(self.images[keep], self.labels[keep], self.mean, self.std)


class BadImages:
    """Counts the corrupt images a stage meets in one split: each is reported once, as a warning, and
    skipped; when more than `max_fraction` of the split's images are corrupt the stage stops."""

    def __init__(self, split_name: str, total: int, max_fraction: float):
        self.split_name, self.total, self.max_fraction = split_name, total, max_fraction
        self.seen: set[str] = set()

    def add(self, errors: list[str]) -> None:
        for error in errors:
            if error in self.seen:
                continue
            self.seen.add(error)
            print(f"[data] WARNING: skipped a corrupt image of the {self.split_name} split ({len(self.seen)} so "
                  f"far): {error}", file=sys.stderr)
        if len(self.seen) > self.max_fraction * self.total:
            raise DataError(f"data: {len(self.seen)} of the {self.total} images of the {self.split_name} split are "
                            f"corrupt (more than data.max_corrupt_fraction = {self.max_fraction}); re-extract the "
                            "data set, or raise data.max_corrupt_fraction")


def load_split(data_dir, split: str, dataset: str = "fashion_mnist") -> Split:
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise DataError(f"data: {path} is missing; run the data stage first (snakemake prepare_data)")
    with np.load(path) as z:
        return Split(z["images"], z["labels"], *STATS[dataset])
