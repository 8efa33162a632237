"""The GPU measurements of the paper-scale paths, in one script of a few minutes (results go into
benchmarks/README.md with the device and versions it prints).

    python benchmarks/gpu.py            # on a GPU machine (about 5 minutes on one H200)
    python benchmarks/gpu.py --smoke    # tiny sizes on the CPU: checks the script runs

1. The supernet training step of a DeiT-S-sized sub-network (patch 16, width 384, 12 layers of 6
   heads, MLP 1536) at 224 px, batch 256, bf16 autocast, against timm's own VisionTransformer of
   the same architecture: the cost of weight sharing by slicing (target <= 1.05x).
2. The training stream (`loader.steps`, ViTAS's weak recipe) at 16 workers on 500x375 JPEGs.
3. Candidates scored per second from the held-out split decoded once onto the GPU (2,000 images).
"""
import argparse
import platform
import tempfile
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from data_paths import stream_rate, write_jpegs
from vitnas import config, loader
from vitnas.arch import Arch
from vitnas.families.vit.supernet import ViTSupernet
from vitnas.families import build_space


def step_ms(model, forward, x, y, steps: int, device) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for i in range(steps + 3):
        if i == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t0) / steps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    img, batch, width, depth, heads, steps = (224, 256, 384, 12, 6, 20) if not args.smoke else (32, 8, 48, 2, 2, 2)
    images, workers, candidates = (2000, 16, 20) if not args.smoke else (40, 2, 2)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device {name}; torch {torch.__version__}, timm {timm.__version__}, CUDA {torch.version.cuda}, "
          f"{loader.job_cpus()} CPUs")

    # 1. Supernet step vs timm's VisionTransformer, same architecture.
    space_cfg = {"family": "vit", "patch_sizes": [16], "embed_dims": [width], "max_layers": depth,
                 "min_depth": depth, "heads": [heads], "qkv_dims": [width], "mlp_dims": [4 * width],
                 "baseline": {"patch": 16, "depth": depth, "heads": heads}}
    cfg = config.validate({"data": {"dataset": "imagenet", "img_size": img}, "spaces": {"vit": space_cfg}})
    space = build_space(cfg)
    arch = Arch.uniform(16, width, depth, heads, width, 4 * width, family="vit")
    x = torch.randn(batch, 3, img, img, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    net = ViTSupernet(space).to(device)
    t_super = step_ms(net, lambda x: net(x, arch), x, y, steps, device)
    vit = VisionTransformer(img_size=img, patch_size=16, embed_dim=width, depth=depth, num_heads=heads,
                            mlp_ratio=4, num_classes=1000).to(device)
    t_timm = step_ms(vit, vit, x, y, steps, device)
    print(f"supernet step, DeiT-S-sized sub-network, {img} px, batch {batch}, bf16: {t_super:.1f} ms; "
          f"timm VisionTransformer {t_timm:.1f} ms; ratio {t_super / t_timm:.3f}")
    del net, vit

    with tempfile.TemporaryDirectory() as tmp:
        split = write_jpegs(Path(tmp), images)
        # 2. The training stream at `workers` workers.
        rate = stream_rate(split, cfg["supernet"]["augment"], workers, 64 if not args.smoke else 8, 30 if not args.smoke else 2)
        print(f"training stream, weak recipe, 224 px, {workers} workers: {rate:.0f} images/s")
        # 3. Candidates per second from the decoded held-out tensor.
        t0 = time.perf_counter()
        held_out = loader.EvalImages.decode(split, img, workers=workers).to(device)
        decode = time.perf_counter() - t0
        net = ViTSupernet(space).to(device).eval()
        score = lambda: loader.accuracy(lambda x: net(x, arch), held_out, 500, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            score()
            t0 = time.perf_counter()
            for _ in range(candidates):
                score()
        rate = candidates / (time.perf_counter() - t0)
        print(f"scoring {len(held_out)} held-out images (decoded once in {decode:.1f} s, on {held_out.images.device}): "
              f"{rate:.2f} DeiT-S-sized candidates/s")


if __name__ == "__main__":
    main()
