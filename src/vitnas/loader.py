"""Getting images to the model fast: the training stream from DataLoader workers, and a split
decoded once for scoring.

- `steps(batches, start, stop, workers)`: batches start .. stop-1 of a stream whose batch `step`
  is a pure function of (seed, step) (`TrainBatches`, `DetectionBatches`: `make(step)`), made ahead
  of the training step by worker processes, pinned for the GPU; the training process then calls
  `finish(x, y, step)` (seeding, CutMix on its device). A worker computes exactly the batch the
  training process would have (it seeds its generators from (seed, step) too), so workers change
  where batches are made, never what they hold: resume and data-parallel equivalence still hold.
- `EvalImages`: a split decoded once with the deterministic evaluation transform (resize, centre
  crop) and kept as uint8 [N, C, H, W] on the GPU when it fits, pinned in CPU memory otherwise;
  the search scores every candidate from it instead of re-decoding JPEGs per candidate.
- Corrupt image files are skipped, each reported once; past `data.max_corrupt_fraction` of a
  split the stage stops (`data.BadImages`).
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset

from .data import BadImages, CorruptImage, Split

PREFETCH = 4  # batches each worker keeps ready
DECODE_CHUNK = 256  # images per decoded chunk of an evaluation split


def job_cpus() -> int:
    """The CPUs this process may run on (SLURM's and taskset's CPU sets included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(data: dict, split: Split) -> int:
    """`data.workers`: a number as given; auto = the job's CPUs for image files, 0 for in-memory
    arrays, whose augmentation is a small part of a training step (Fashion-MNIST)."""
    workers = data.get("workers", "auto")
    if workers == "auto":
        return 0 if split.in_memory else job_cpus()
    return int(workers)


def _worker_init(_: int) -> None:
    # SIGUSR1 (SLURM's warning before the time limit) and Ctrl-C reach every process of the job:
    # the training process checkpoints and stops its workers; a worker killed by them first would
    # only break that. SIGTERM keeps its default, so a worker always ends when told to.
    for sig in (signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def _as_is(item):
    return item


@contextmanager
def _iterate(loader: DataLoader | None, fallback):
    """Iterate a DataLoader (or `fallback` when None) and stop its workers however the loop ends:
    an exception whose traceback is kept (a test's, a log's) would otherwise keep them waiting."""
    if loader is None:
        yield fallback
        return
    it = iter(loader)
    try:
        yield it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


class _Steps(Dataset):
    """Item `step`: (batch `step` of the stream, the corrupt images skipped making it)."""

    def __init__(self, batches):
        self.batches = batches

    def __getitem__(self, step: int):
        batch = self.batches.make(step)
        pop = getattr(self.batches, "pop_skipped", None)
        return batch, pop() if pop else []


def steps(batches, start: int, stop: int, workers: int = 0, pin_memory: bool = False):
    """Batches `start` .. `stop` - 1 of `batches`, in order; with `workers` > 0 from that many
    worker processes, each making whole batches ahead. Corrupt images skipped on the way are
    counted in `batches.bad` (a `data.BadImages`) when the stream has one."""
    items = _Steps(batches)
    pool = None
    if workers > 0 and stop > start:
        pool = DataLoader(items, batch_size=None, sampler=range(start, stop), num_workers=workers,
                          collate_fn=_as_is, pin_memory=pin_memory, prefetch_factor=PREFETCH,
                          worker_init_fn=_worker_init)
    bad = getattr(batches, "bad", None)
    with _iterate(pool, (items[step] for step in range(start, stop))) as source:
        for batch, skipped in source:
            if bad is not None and skipped:
                bad.add(skipped)
            yield batch


class _Decoded(Dataset):
    """Item i: (uint8 [C, H, W] after the evaluation transform, or None, and the error if corrupt)."""

    def __init__(self, split: Split, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        try:
            return torch.as_tensor(self.transform(self.split.pil(i))), None
        except CorruptImage as e:
            return None, str(e)


def decoded_chunks(split: Split, img_size: int, workers: int = 0, bad: BadImages | None = None):
    """(uint8 [n, C, H, W], labels [n]) chunks of `split` after the deterministic evaluation
    transform: in-memory arrays as they are (resized later, as a float batch), files through timm's
    evaluation transform (resize, centre crop) with the normalisation left for the device. Corrupt
    files are left out (and counted in `bad`)."""
    if split.in_memory:
        x = torch.from_numpy(split.images)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        yield x, torch.from_numpy(split.labels)
        return
    # use_prefetcher: timm's transform up to uint8 [C, H, W]; ToTensor / Normalize happen per batch.
    transform = create_transform(input_size=(split.channels, img_size, img_size), is_training=False,
                                 use_prefetcher=True)
    items = _Decoded(split, transform)
    pool = DataLoader(items, batch_size=DECODE_CHUNK, num_workers=workers, collate_fn=_as_is,
                      worker_init_fn=_worker_init if workers else None)
    start = 0
    with _iterate(pool, None) as chunks:
        for chunk in chunks:
            keep = [i for i, (img, _) in enumerate(chunk) if img is not None]
            errors = [err for _, err in chunk if err is not None]
            if bad is not None and errors:
                bad.add(errors)
            labels = torch.from_numpy(split.labels[start:start + len(chunk)][keep])
            start += len(chunk)
            if keep:
                yield torch.stack([chunk[i][0] for i in keep]), labels


@dataclass(frozen=True)
class EvalImages:
    """A split after the evaluation transform, decoded once: uint8 images [N, C, H, W] (at the
    input size, or at an in-memory set's own size, resized per batch), labels, pixel statistics."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    img_size: int

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def decode(cls, split: Split, img_size: int, workers: int = 0, max_corrupt: float = 1.0,
               split_name: str = "search") -> "EvalImages":
        bad = BadImages(split_name, len(split), max_corrupt)
        chunks = list(decoded_chunks(split, img_size, workers, bad))
        if not chunks:
            from .data import DataError

            raise DataError(f"data: no image of the {split_name} split decodes; re-extract the data set")
        images, labels = (torch.cat(parts) for parts in zip(*chunks))
        return cls(images, labels, split.mean, split.std, img_size)

    def to(self, device: torch.device, fraction: float = 0.5) -> "EvalImages":
        """On the GPU when the images take under `fraction` of its free memory, else pinned in CPU
        memory (copied per batch without blocking); unchanged on a CPU."""
        if device.type != "cuda":
            return self
        if self.images.nbytes < fraction * torch.cuda.mem_get_info(device)[0]:
            return replace(self, images=self.images.to(device), labels=self.labels.to(device))
        return replace(self, images=self.images.pin_memory())

    def batches(self, batch_size: int, device: torch.device):
        """(normalised float images on `device`, labels) per `batch_size` images."""
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        for i in range(0, len(self), batch_size):
            yield normalise(self.images[i:i + batch_size].to(device, non_blocking=True), self.img_size,
                            mean, std), self.labels[i:i + batch_size]


def normalise(x: torch.Tensor, img_size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images -> normalised floats at `img_size` (bilinear resize of a float batch if needed)."""
    x = x.float().div_(255)
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    return (x - mean) / std


@torch.no_grad()
def _correct(forward, images: EvalImages, batch_size: int, device: torch.device) -> int:
    return sum((forward(x).argmax(-1) == labels.to(x.device)).sum().item()
               for x, labels in images.batches(batch_size, device))


def accuracy(forward, images: EvalImages, batch_size: int, device: torch.device) -> float:
    """Top-1 accuracy (%) of `forward` (in eval mode) on decoded images."""
    return 100.0 * _correct(forward, images, batch_size, device) / len(images)


def held_out_images(cfg: dict, data_dir, n: int | None, img_size: int, device: torch.device) -> EvalImages:
    """The search split's class-balanced subset of `n` images (fixed by the seed; all when None),
    decoded once and placed for scoring: what the search, health check and ranking score on."""
    from .data import load_split

    split = load_split(data_dir, "search", cfg["data"]["dataset"]).subset(n, cfg["seed"])
    return EvalImages.decode(split, img_size, resolve_workers(cfg["data"], split),
                             cfg["data"]["max_corrupt_fraction"]).to(device)


def split_accuracy(forward, cfg: dict, split: Split, split_name: str, img_size: int, batch_size: int,
                   device: torch.device) -> tuple[float, int]:
    """Top-1 accuracy (%) of `forward` on a whole split decoded chunk by chunk (the test split's
    final numbers: too large to keep decoded), and the number of images scored."""
    bad = BadImages(split_name, len(split), cfg["data"]["max_corrupt_fraction"])
    correct = scored = 0
    for x, labels in decoded_chunks(split, img_size, resolve_workers(cfg["data"], split), bad):
        correct += _correct(forward, EvalImages(x, labels, split.mean, split.std, img_size), batch_size, device)
        scored += len(labels)
    return 100.0 * correct / max(scored, 1), scored
