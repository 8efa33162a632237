"""CIFAR-10 (Krizhevsky, 2009) in either of the two shapes users have it in, read into memory.

- torchvision's download (`CIFAR10(root, download=True)`): `root/cifar-10-batches-py/` with the
  pickled batches `data_batch_1` .. `data_batch_5`, `test_batch` and `batches.meta`.
- A JPEG tree: `root/train/<class>/*.jpg` and `root/test/<class>/*.jpg` (what
  `cifar10-jpeg.tar.gz` unpacks to under `cifar10/`), decoded once when the data is prepared.

Either way each source is (uint8 images [N, 32, 32, 3], int64 labels, ids): ids are indices into
the concatenated batches (pickles) or paths under train/ or test/ (JPEG tree). Class indices are
the sorted class names, which is also the pickles' own order (airplane .. truck).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import CorruptImage, DataError

PICKLE_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
PICKLE_FILES = TRAIN_BATCHES + ("test_batch", "batches.meta")
TREE_SOURCES = {"train": "train", "test": "test"}  # source -> folder under root
SIDE = 32
# batches.meta's label_names: also the sorted folder names of the JPEG tree
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SUFFIXES = {".jpg", ".jpeg", ".png"}
GET_IT = ("set data.root to a folder holding cifar-10-batches-py/ (torchvision's "
          "CIFAR10(root, download=True) writes it) or train/<class>/*.jpg and test/<class>/*.jpg "
          "(the cifar10/ folder of cifar10-jpeg.tar.gz)")


def layout(root) -> tuple[str, Path]:
    """("pickles", the batches' folder) or ("jpeg", root): which copy `root` holds."""
    root = Path(root)
    for folder in (root / PICKLE_FOLDER, root):
        if (folder / "batches.meta").is_file() or (folder / "data_batch_1").is_file():
            missing = [f for f in PICKLE_FILES if not (folder / f).is_file()]
            if missing:
                raise DataError(f"data: {folder} lacks {', '.join(missing)}; download CIFAR-10 again "
                                "(torchvision's CIFAR10(root, download=True))")
            return "pickles", folder
    if all(_class_folders(root / f) for f in TREE_SOURCES.values()):
        return "jpeg", root
    raise DataError(f"data: no CIFAR-10 in {root}; {GET_IT}")


def _class_folders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in SUFFIXES)


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are dicts of lists, strings and numpy arrays; any other global is refused,
    so a planted file cannot run code when it is read."""

    SAFE = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.SAFE:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, not only to arrays")
        if module.startswith("numpy") and name == "_reconstruct":  # numpy 1's module name or numpy 2's
            return np.ndarray.__reduce__(np.zeros(1))[0]
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            # latin1: the batches were pickled by Python 2 (torchvision reads them the same way)
            batch = _BatchUnpickler(f, encoding="latin1").load()
        if not isinstance(batch, dict):
            raise pickle.UnpicklingError(f"it holds a {type(batch).__name__}, not a dict")
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"data: {path} is not a CIFAR-10 batch ({e}); download CIFAR-10 again "
                        "(torchvision's CIFAR10(root, download=True))") from None
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _batch_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    try:
        # rows of 3,072 bytes: the red plane, then green, then blue, each 32 x 32 row-major
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (KeyError, ValueError) as e:
        raise DataError(f"data: {path} lacks CIFAR-10's data or labels ({type(e).__name__}: {e}); "
                        "download CIFAR-10 again (torchvision's CIFAR10(root, download=True))") from None
    if len(images) != len(labels):
        raise DataError(f"data: {path} holds {len(images)} images and {len(labels)} labels; "
                        "download CIFAR-10 again (torchvision's CIFAR10(root, download=True))")
    return np.ascontiguousarray(images), labels


def read_pickles(folder) -> dict[str, tuple[np.ndarray, ...]]:
    """torchvision's batches: the five training batches in order as `train`, `test_batch` as `test`."""
    folder = Path(folder)
    out = {}
    for source, names in (("train", TRAIN_BATCHES), ("test", ("test_batch",))):
        images, labels = (np.concatenate(parts) for parts in zip(*(_batch_arrays(folder / n) for n in names)))
        out[source] = (images, labels, np.arange(len(labels)).astype(str))
    return out


def decode(path: Path) -> np.ndarray:
    """One image file as uint8 [32, 32, 3]; CorruptImage when it does not decode or is not 32 x 32."""
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptImage(f"{path}: {e}") from None
    if pixels.shape != (SIDE, SIDE, 3):
        raise CorruptImage(f"{path}: {pixels.shape[1]} x {pixels.shape[0]} pixels, not CIFAR-10's 32 x 32")
    return pixels


def read_tree(root) -> tuple[dict[str, tuple[np.ndarray, ...]], dict[str, list[str]]]:
    """The JPEG tree decoded: (images, labels, ids) per source, and per source the corrupt files
    left out (each as 'path: reason'). Classes: train/'s folder names, sorted."""
    root = Path(root)
    classes = [d.name for d in _class_folders(root / "train")]
    out, corrupt = {}, {}
    for source, folder in TREE_SOURCES.items():
        images, labels, ids, corrupt[source] = [], [], [], []
        for label, name in enumerate(classes):
            files = _image_files(root / folder / name) if (root / folder / name).is_dir() else []
            for f in files:
                try:
                    images.append(decode(f))
                except CorruptImage as e:
                    corrupt[source].append(str(e))
                    continue
                labels.append(label)
                ids.append(f"{name}/{f.name}")
        if not labels:
            raise DataError(f"data: no images under {root / folder}; {GET_IT}")
        out[source] = (np.stack(images), np.array(labels, dtype=np.int64), np.array(ids))
    return out, corrupt


def counts(root) -> dict[str, int]:
    """Images per source (train, test) without decoding any: file counts, or the batches' labels."""
    kind, folder = layout(root)
    if kind == "pickles":
        return {source: len(arrays[1]) for source, arrays in read_pickles(folder).items()}
    classes = [d.name for d in _class_folders(folder / "train")]
    return {source: sum(len(_image_files(folder / sub / c)) for c in classes if (folder / sub / c).is_dir())
            for source, sub in TREE_SOURCES.items()}
