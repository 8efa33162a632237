"""Paper-scale data paths on real JPEGs (results go into benchmarks/README.md).

    python benchmarks/data_paths.py [--images 2000] [--workers 1 2] [--root DIR]

1. The training stream: images per second of vitnas's stream (`TrainBatches` through
   `loader.steps`, ViTAS's weak recipe and the DeiT recipe) at each worker count, beside timm's
   `create_loader` on the same files with the same worker count (its default training transform,
   uint8 batches normalised later, as with its GPU prefetcher). Batches are only made, not used.
2. Search scoring: candidates scored per minute on the held-out JPEGs, before (every candidate
   decodes the split again in the process, what the search did until now) and after (decoded once
   with workers into a uint8 tensor, then every candidate scores from it).

The JPEGs (500x375, as ImageNet's typical photo) are written into a temporary ImageNet-style tree
unless --root points at one.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitnas import config, loader
from vitnas.arch import Arch
from vitnas.batches import TrainBatches
from vitnas.data import STATS, Split
from vitnas.families.vit.model import ViT


def write_jpegs(root: Path, n: int, classes: int = 10, size=(375, 500)) -> Split:
    """`n` smooth random photos-sized JPEGs (quality 90) in root/train/<class>/."""
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n):
        c = i % classes
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (size[0] // 25, size[1] // 25, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize(size[::-1], Image.Resampling.BICUBIC)
        noise = rng.integers(0, 24, (*size, 3), dtype=np.uint8)
        img = Image.fromarray(np.clip(np.asarray(img).astype(np.int16) + noise, 0, 255).astype(np.uint8))
        path = folder / f"n{c:08d}_{i}.JPEG"
        img.save(path, quality=90)
        paths.append(str(path))
        labels.append(c)
    return Split(np.array(paths), np.array(labels), *STATS["imagenet"])


def stream_rate(split: Split, recipe: dict, workers: int, batch: int, steps: int) -> float:
    batches = TrainBatches(split, batch, recipe, 224, 1000, seed=0, workers=workers)
    it = loader.steps(batches, 0, steps + 2, workers)
    next(it), next(it)  # workers started, first batches in flight
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - t0)


def timm_rate(root: Path, workers: int, batch: int, steps: int, recipe: dict | None = None) -> float:
    """timm's loader: its default training transform with its prefetcher (uint8 batches from
    fast_collate, normalised and erased on the device: here not at all), or, given `recipe`, that
    recipe's crop, flip and random erasing with normalisation in the workers (vitnas's work)."""
    from timm.data import ImageDataset, create_loader

    dataset = ImageDataset(str(root / "train"))
    same = {} if recipe is None else {"scale": tuple(recipe["scale"]), "hflip": recipe["hflip"],
                                      "color_jitter": recipe["color_jitter"], "re_prob": recipe["random_erasing"],
                                      "re_mode": "pixel", "interpolation": "bilinear"}
    data = create_loader(dataset, input_size=(3, 224, 224), batch_size=batch, is_training=True,
                         num_workers=workers, use_prefetcher=recipe is None, device=torch.device("cpu"),
                         persistent_workers=False, **same)
    it = iter(data)
    next(it), next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - t0)


def scoring(split: Split, candidates: int, workers: int, batch: int) -> tuple[float, float, float]:
    """(candidates/min before, after, seconds of the one decode after) with a small ViT at 224 px."""
    torch.manual_seed(0)
    model = ViT(Arch.uniform(16, 64, 2, 2, 64, 128, family="vit"), 224, 3, 1000).eval()
    cpu = torch.device("cpu")
    t0 = time.perf_counter()
    for _ in range(candidates):  # before: decode per candidate, in the process
        loader.accuracy(model, loader.EvalImages.decode(split, 224, workers=0), batch, cpu)
    before = candidates / (time.perf_counter() - t0) * 60
    t0 = time.perf_counter()
    images = loader.EvalImages.decode(split, 224, workers=workers)
    decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(candidates):
        loader.accuracy(model, images, batch, cpu)
    after = candidates / (time.perf_counter() - t0) * 60
    return before, after, decode


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000, help="JPEGs written (default 2000)")
    p.add_argument("--root", help="an ImageNet-style tree to read instead of writing JPEGs")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="batches timed per stream")
    p.add_argument("--candidates", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of the scoring forward")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        if args.root:
            files = sorted(str(f) for f in (root / "train").rglob("*.JPEG"))[:args.images]
            split = Split(np.array(files), np.zeros(len(files), dtype=np.int64), *STATS["imagenet"])
        else:
            t0 = time.perf_counter()
            split = write_jpegs(root, args.images)
            print(f"wrote {args.images} JPEGs of 500x375 in {time.perf_counter() - t0:.0f} s")
        cfg = config.validate({})
        recipes = {"weak (ViTAS supernet)": cfg["supernet"]["augment"], "DeiT (retrain)": cfg["retrain"]["augment"]}
        print(f"torch {torch.__version__}, {loader.job_cpus()} CPUs, batch {args.batch}, {args.steps} batches timed")
        print(f"{'stream':28s}" + "".join(f"{w:>10d} w" for w in args.workers))
        for name, recipe in recipes.items():
            rates = [stream_rate(split, recipe, w, args.batch, args.steps) for w in args.workers]
            print(f"{'vitnas ' + name:28s}" + "".join(f"{r:10.0f}/s" for r in rates))
        rates = [timm_rate(root, w, args.batch, args.steps) for w in args.workers]
        print(f"{'timm create_loader (default)':28s}" + "".join(f"{r:10.0f}/s" for r in rates))
        rates = [timm_rate(root, w, args.batch, args.steps, recipes["weak (ViTAS supernet)"]) for w in args.workers]
        print(f"{'timm create_loader (weak)':28s}" + "".join(f"{r:10.0f}/s" for r in rates))
        before, after, decode = scoring(split, args.candidates, max(args.workers), 200)
        print(f"scoring {len(split)} held-out JPEGs, ViT p16 e64 d2 at 224 px, {args.threads} threads: "
              f"{before:.2f} candidates/min before (decode per candidate), {after:.2f} after "
              f"(one decode with {max(args.workers)} workers: {decode:.1f} s) = {after / before:.1f}x")


if __name__ == "__main__":
    main()
