"""Images → tensors: the augmented training stream and plain evaluation batches.

Training batch `step` is a pure function of (seed, step): its images, its augmentation and its
CutMix draw all come from generators seeded by that pair (augmentation per image, by its place in
the global batch, so a data-parallel run augments exactly as a single process does). A run resumed at step k therefore sees
exactly the batches an uninterrupted run would have seen, with no RNG state to carry around.
Augmentation is timm's (`create_transform`, `Mixup`), applied per image to a PIL image. The
stream may run in DataLoader workers (vitnas.loader.steps): they compute the same batches.
A corrupt image file is replaced by a substitute drawn from (seed, step, place), so the batch
keeps its size and stays a function of (seed, step); the skipped file is reported.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
from PIL import Image
from timm.data import Mixup, auto_augment, create_transform
from timm.data.mixup import mixup_target
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torchvision.ops import roi_align

from .config import ConfigError
from .data import BadImages, CorruptImage, DataError, Split
from .patch_mixup import PatchMixup, PatchMixupLoss

SUBSTITUTES = 10  # draws for a decodable image in place of a corrupt one


def _posterize(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    """timm's posterize, keeping 0 bits as Pillow < 11 did (a black image). RandAugment's
    posterize reaches 0 bits at the end of its magnitude range (m9 with mstd 0.5 gets there for
    about 2 % of draws), and Pillow 13 raises a ValueError there, which stopped training."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


# timm's AugmentOp looks its function up here when a policy is built.
for _name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
    auto_augment.NAME_TO_OP[_name] = _posterize


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """A seed for one random stream of one step (SeedSequence wants non-negative entries)."""
    return int(np.random.SeedSequence([seed, step, stream % 2**32]).generate_state(1)[0])


def seed_everything(seed: int, cpu_only: bool = False) -> None:
    """Seed the global generators that timm's transforms, Mixup, dropout and drop-path draw from.
    `cpu_only`: leave the accelerators' generators alone (an image's augmentation: torch's full
    manual_seed costs ~2.5 ms with a CUDA build, as much as decoding the image)."""
    random.seed(seed)
    np.random.seed(seed)
    if cpu_only:
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


class TrainBatches:
    """The deterministic, augmented training stream of one run (and one rank of it)."""

    def __init__(self, split: Split, batch_size: int, augment: dict, img_size: int, num_classes: int,
                 seed: int, rank: int = 0, world: int = 1, workers: int = 0, max_corrupt: float = 0.001,
                 patch_grid: int | None = None):
        if batch_size > len(split):
            raise ConfigError(f"batch_size {batch_size} exceeds the {len(split)} training images; lower it")
        self.workers = workers  # DataLoader worker processes that make the batches (loader.steps)
        self.bad = BadImages("train", len(split), max_corrupt)
        self.skipped: list[str] = []  # corrupt files met since the last pop_skipped
        if batch_size % world:
            raise ConfigError(f"batch_size {batch_size} is not divisible by the {world} processes; "
                             "make it a multiple of the GPU count")
        self.split = split
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.steps_per_epoch = len(split) // batch_size
        # Crop-and-flip recipes on in-memory images at their own size (the embedded default's) are
        # applied to the whole batch at once: timm's random-resized-crop parameters drawn per image,
        # then one bilinear crop-and-resize of the batch; the per-image PIL path costs 2-3x more.
        native = split.in_memory and split.images.shape[1] == img_size
        self.batched = native and not augment["randaugment"] and not augment["color_jitter"] \
            and not augment["random_erasing"]
        self.scale, self.hflip, self.img_size = tuple(augment["scale"]), augment["hflip"], img_size
        self.mean = torch.tensor(split.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(split.std).view(1, -1, 1, 1)
        self.transform = create_transform(
            input_size=(split.channels, img_size, img_size), is_training=True,
            scale=tuple(augment["scale"]), hflip=augment["hflip"],
            color_jitter=augment["color_jitter"] or None, auto_augment=augment["randaugment"],
            re_prob=augment["random_erasing"], re_mode="pixel", mean=split.mean, std=split.std,
            interpolation="bilinear")
        smoothing = augment["label_smoothing"]
        self.mixup = self.patch_mixup = None
        if patch_grid:  # ViT-ResNAS's patch-level mixup replaces Mixup/CutMix (vitnas.patch_mixup)
            self.patch_mixup = PatchMixup(patch_grid, num_classes, smoothing)
            self.criterion = PatchMixupLoss()
        elif augment["cutmix"] > 0 or augment["mixup"] > 0:
            self.mixup = Mixup(mixup_alpha=augment["mixup"], cutmix_alpha=augment["cutmix"],
                               label_smoothing=smoothing, num_classes=num_classes)
            self.criterion = SoftTargetCrossEntropy()
        elif smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing)
        else:
            self.criterion = torch.nn.CrossEntropyLoss()

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` (this rank's share of the global batch), augmented, with its targets."""
        return self.finish(*self.make(step), step)

    def _permutation(self, epoch: int) -> np.ndarray:
        """The epoch's image order (kept: at ImageNet's 1.28M images a permutation costs ~20 ms)."""
        if getattr(self, "_perm_epoch", None) != epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
            self._perm_epoch = epoch
        return self._perm

    def make(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The images of batch `step`, augmented image by image, and their labels: the part a
        worker process makes (`finish` mixes them in the training process)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        batch = self._permutation(epoch)[pos * self.batch_size:(pos + 1) * self.batch_size].copy()
        positions = range(self.rank, len(batch), self.world)  # this rank's share
        if self.batched:
            x = self._crop_and_flip(batch, step, list(positions))
        else:
            images = []
            for j in positions:  # each image's augmentation is seeded by its place in the global batch,
                image, batch[j] = self._augmented(batch[j], step, j)  # so N ranks see what 1 process sees
                images.append(image)
            x = torch.stack(images)
        return x, torch.from_numpy(self.split.labels[batch[list(positions)]])

    def finish(self, x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """In the training process, on its device: seed the step's own randomness (CutMix here,
        dropout and drop-path in the model, per rank) and mix the batch, as timm's training does
        on the GPU (a batch copy per mix: no work for the workers)."""
        seed_everything(step_seed(self.seed, step, -1 - self.rank))
        if self.patch_mixup is not None:  # targets become (image targets, patch targets)
            return self.patch_mixup(x, y, np.random.default_rng(step_seed(self.seed, step, -1 - self.rank)))
        if self.mixup is not None and len(x) % 2 == 0:  # timm's Mixup pairs images up
            x, y = self.mixup(x, y)
        elif self.mixup is not None:  # an odd batch: no mixing, same (smoothed) soft targets
            y = mixup_target(y, self.mixup.num_classes, 1.0, self.mixup.label_smoothing)
        return x, y

    def pop_skipped(self) -> list[str]:
        skipped, self.skipped = self.skipped, []
        return skipped

    def _augmented(self, index: int, step: int, place: int) -> tuple[torch.Tensor, int]:
        """The augmented image `index` at `place` of batch `step`, and the index used: when its
        file is corrupt, a substitute drawn from (seed, step, place) takes its place."""
        rng = None
        for _ in range(SUBSTITUTES):
            try:
                image = self.split.pil(index)
            except CorruptImage as e:
                self.skipped.append(str(e))
                rng = rng or np.random.default_rng([self.seed, step, place, 0xBAD])
                index = int(rng.integers(len(self.split)))
                continue
            seed_everything(step_seed(self.seed, step, place), cpu_only=True)
            return self.transform(image), index
        raise DataError(f"data: {SUBSTITUTES} images in a row of the training split are corrupt (last: "
                        f"{self.skipped[-1]}); re-extract the data set")

    def _crop_and_flip(self, batch: np.ndarray, step: int, positions: list[int]) -> torch.Tensor:
        """The crop-and-flip recipe on a whole batch. Parameters are drawn for every place in the
        global batch from a generator seeded by (seed, step), so every rank draws the same ones."""
        rng = np.random.default_rng([self.seed, step, 2**31 - 1])
        n, side = len(batch), self.img_size
        boxes = random_resized_crop_boxes(rng, n, side, side, self.scale)[positions]
        flips = (rng.random(n) < self.hflip)[positions]
        x = torch.from_numpy(self.split.images[batch[positions]]).float().div_(255)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        if self.scale != (1.0, 1.0):  # [1, 1] is always the whole image: nothing to resample
            rois = torch.cat([torch.arange(len(x), dtype=torch.float32)[:, None],
                              torch.from_numpy(boxes).float()], dim=1)
            # One sample per output pixel at its centre: bilinear resizing (align_corners=False).
            x = roi_align(x, rois, (side, side), spatial_scale=1.0, sampling_ratio=1, aligned=True)
        flip = torch.from_numpy(flips).view(-1, 1, 1, 1)
        return (torch.where(flip, x.flip(-1), x) - self.mean) / self.std


def train_batches(cfg: dict, section: str, split: Split, space, ctx, patch_grid: int | None = None) -> TrainBatches:
    """The training stream of a stage's section (`supernet` or `retrain`) for `space`'s input;
    `patch_grid`: the grid side of a patch head trained on patch-level mixup (None: no patch head)."""
    from .loader import resolve_workers

    sec = cfg[section]
    return TrainBatches(split, sec["batch_size"], sec["augment"], space.img_size, space.num_classes, cfg["seed"],
                        ctx.rank, ctx.world, resolve_workers(cfg["data"], split), cfg["data"]["max_corrupt_fraction"],
                        patch_grid)


def random_resized_crop_boxes(rng: np.random.Generator, n: int, height: int, width: int,
                              scale: tuple[float, float], ratio=(3 / 4, 4 / 3), attempts: int = 10) -> np.ndarray:
    """timm's RandomResizedCrop parameters for `n` images as (x1, y1, x2, y2) boxes: up to 10
    draws of an area fraction in `scale` and a log-uniform aspect ratio, the first that fits; else
    the whole image (the fallback for square images)."""
    area = height * width * rng.uniform(scale[0], scale[1], (n, attempts))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), (n, attempts)))
    w = np.round(np.sqrt(area * aspect)).astype(int)
    h = np.round(np.sqrt(area / aspect)).astype(int)
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = np.argmax(fits, axis=1)
    ok = fits[np.arange(n), first]
    w = np.where(ok, w[np.arange(n), first], width)
    h = np.where(ok, h[np.arange(n), first], height)
    top = np.floor(rng.random(n) * (height - h + 1)).astype(int)
    left = np.floor(rng.random(n) * (width - w + 1)).astype(int)
    return np.stack([left, top, left + w, top + h], axis=1).astype(np.float64)
