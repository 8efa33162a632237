"""A retrained network of any family as the backbone of a torchvision detector.

The backbone reads feature maps through the model's `forward_intermediates` (timm's interface),
never from inside it. A single-stage ViT has one map: `FeaturePyramid` follows ViTDet's simple
feature pyramid, up- or down-sampling it into a few levels with no top-down path. A multi-stage
network has one map per stage: they go through torchvision's `FeaturePyramidNetwork`.
`build_detector` puts the backbone into torchvision's RetinaNet or Faster R-CNN with anchors over
the objects' sizes. The backbone sees the detection resolution (a 64-px canvas, an 800 x 1333 COCO
image padded to the coarsest stride), not the size it was trained at: the families' models resample
their position embeddings to the input's token grid.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm2d
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock
from torchvision.ops.poolers import initLevelMapper

# The classification stage's normalisation (of pixel / 255), by input channels: the backbone was
# trained on inputs normalised this way (grey: Fashion-MNIST's statistics; RGB: ImageNet's).
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
PIXEL_STATS = {1: ((FASHION_MEAN,), (FASHION_STD,)), 3: (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)}

# Feature strides (px) the pyramid covers: fine enough for 8-px boxes, coarse enough for 32-px ones.
STRIDE_RANGE = (4, 16)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
# Faster R-CNN's defaults (2000 proposals, 512 sampled RoIs per image, a 1024-wide box head) are
# sized for 800-px COCO images with dozens of objects; a small canvas holds a handful, and these
# cut a CPU training step about fourfold.
FASTER_RCNN_SMALL = dict(rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500,
                         rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
                         box_batch_size_per_image=128)
BOX_HEAD_WIDTH = 256


def pyramid_scales(patch: int, stride_range: tuple[int, int] = STRIDE_RANGE) -> list[float]:
    """Resampling factors of the patch grid (4 = two 2x upsamplings, 1/2 = one pooling, ...)
    that give whole-pixel strides inside `stride_range`, finest first."""
    lo, hi = stride_range
    scales = [s for s in (4, 2, 1, 1 / 2, 1 / 4, 1 / 8)
              if (patch / s).is_integer() and lo <= patch / s <= hi]
    if not scales:
        raise ValueError(f"no pyramid level of patch {patch} has a stride within {stride_range}")
    return scales


def _level(embed: int, out_channels: int, scale: float) -> nn.Sequential:
    """Resample the patch-token map by `scale`, then project it to `out_channels` (ViTDet's
    1x1 conv, LayerNorm, 3x3 conv, LayerNorm)."""
    layers: list[nn.Module] = []
    dim = embed
    for i in range(round(math.log2(scale)) if scale > 1 else 0):
        if i:  # between two upsamplings, as in ViTDet
            layers += [LayerNorm2d(dim), nn.GELU()]
        layers.append(nn.ConvTranspose2d(dim, max(dim // 2, 1), 2, stride=2))
        dim = max(dim // 2, 1)
    if scale < 1:
        layers.append(nn.MaxPool2d(round(1 / scale)))
    layers += [nn.Conv2d(dim, out_channels, 1, bias=False), LayerNorm2d(out_channels),
               nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
               LayerNorm2d(out_channels)]
    return nn.Sequential(*layers)


def stage_outputs(model: nn.Module) -> list[int]:
    """Indices of the feature maps a detector reads: the last map of every stride (one for a
    single-stage ViT, one per stage for a multi-stage network)."""
    info = model.feature_info
    return [i for i, f in enumerate(info) if i + 1 == len(info) or info[i + 1]["reduction"] != f["reduction"]]


class CoarserLevels(ExtraFPNBlock):
    """FPN levels coarser than the last stage (RetinaNet's P6, P7): each a 3x3 stride-2 conv of
    the one before, ReLU between, starting from the last FPN output."""

    def __init__(self, channels: int, strides: list[int]):
        super().__init__()
        self.names = [str(s) for s in strides]
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, stride=2, padding=1) for _ in strides)

    def forward(self, results: list[torch.Tensor], x, names: list[str]):
        p = results[-1]
        for k, conv in enumerate(self.convs):
            p = conv(F.relu(p) if k else p)
            results.append(p)
        return results, [*names, *self.names]


class FeaturePyramid(nn.Module):
    """Backbone for torchvision's detectors: image [B, C, H, W] -> OrderedDict of feature maps
    [B, out_channels, H / stride, W / stride], keyed by str(stride), finest first.

    Single-stage: the strides of `stride_range` the patch grid reaches by 2x steps. Multi-stage:
    the stages whose stride is at least stride_range[0] (the last one at any rate) through an FPN,
    plus coarser levels (stride x 2 each) up to stride_range[1].

    H and W must be multiples of `size_divisible` (the coarsest stride) so that every level's
    grid is exact; the detector's transform pads batches to it.
    """

    def __init__(self, model: nn.Module, out_channels: int = 64,
                 stride_range: tuple[int, int] = STRIDE_RANGE):
        super().__init__()
        model.head = nn.Identity()  # the classifier has no part in detection (and DDP wants no idle weights)
        self.body, self.out_channels = model, out_channels
        self.take = stage_outputs(model)
        info = [model.feature_info[i] for i in self.take]
        if len(info) == 1:  # ViTDet's simple pyramid from the one map
            patch, embed = info[0]["reduction"], info[0]["num_chs"]
            scales = pyramid_scales(patch, stride_range)
            self.strides = [round(patch / s) for s in scales]
            self.levels = nn.ModuleList(_level(embed, out_channels, s) for s in scales)
            self.fpn = None
        else:  # one level per stage from stride_range's finest on, merged top-down
            keep = [k for k, f in enumerate(info) if f["reduction"] >= stride_range[0]] or [len(info) - 1]
            self.take, info = [self.take[k] for k in keep], [info[k] for k in keep]
            self.strides = [f["reduction"] for f in info]
            extra = []  # coarser levels past the last stage, up to stride_range's coarsest (RetinaNet's P6, P7)
            while (extra or self.strides)[-1] * 2 <= stride_range[1]:
                extra.append((extra or self.strides)[-1] * 2)
            self.levels = None
            self.fpn = FeaturePyramidNetwork([f["num_chs"] for f in info], out_channels,
                                             extra_blocks=CoarserLevels(out_channels, extra) if extra else None)
            self.strides += extra
        self.names = [str(s) for s in self.strides]
        self.size_divisible = max(self.strides)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        # Through the classifier's final norm: the pretrained features were calibrated through it.
        maps = self.body.forward_intermediates(x, indices=self.take, norm=True, intermediates_only=True)
        if self.fpn is None:
            return OrderedDict((name, level(maps[0])) for name, level in zip(self.names, self.levels))
        return self.fpn(OrderedDict(zip(self.names, maps)))


def anchor_sizes(object_size: tuple[int, int], levels: int,
                 per_level: int = 3) -> tuple[tuple[float, ...], ...]:
    """Anchor sides spread geometrically over the objects' box sizes, smallest on the finest level.

    The range starts at half the smallest item side: a tight box is narrower than its item
    (trousers, sandals), and the 0.5/2 aspect ratios cover its shape, not its area.
    """
    sizes = np.geomspace(object_size[0] / 2, object_size[1], levels * per_level).round(1)
    return tuple(tuple(float(s) for s in sizes[i * per_level:(i + 1) * per_level])
                 for i in range(levels))


def _roi_pool(backbone: FeaturePyramid, small_images: bool = True) -> MultiScaleRoIAlign:
    """Faster R-CNN's RoIAlign over the pyramid levels, with exact scales, and a level rule for
    small images (else FPN's: a 224-px box pools from stride 16)."""
    pool = MultiScaleRoIAlign(backbone.names, output_size=7, sampling_ratio=2)
    # torchvision would infer each scale as the nearest power of 2 (wrong for patch-7 strides 7, 14)
    # and pool 224-px boxes from stride 16 (tuned for 800-px images); set both up front instead:
    # on small images a box pools from the level whose stride is about half its side.
    levels = [round(math.log2(s)) for s in backbone.strides]
    pool.scales = [1.0 / s for s in backbone.strides]
    pool.map_levels = (initLevelMapper(levels[0], levels[-1], canonical_scale=2 * 2 ** levels[-1],
                                       canonical_level=levels[-1]) if small_images
                       else initLevelMapper(levels[0], levels[-1]))
    return pool


def build_detector(model: nn.Module, kind: str, num_classes: int, min_size: int,
                   object_size: tuple[int, int] = (14, 32), out_channels: int = 64, *,
                   max_size: int | None = None, stride_range: tuple[int, int] = STRIDE_RANGE,
                   image_mean=None, image_std=None, small_images: bool = True) -> nn.Module:
    """torchvision RetinaNet or Faster R-CNN around `model`, for labels 1..num_classes.

    torchvision's transform scales each image so its shorter side is `min_size` unless its longer
    side would pass `max_size` (None = min_size: a square canvas stays as it is), then pads the
    batch to the coarsest stride. `stride_range`: the strides a single-stage backbone's simple
    pyramid covers (a multi-stage one uses its stage strides). image_mean / image_std: one entry
    per input channel, by default the backbone's training statistics (`PIXEL_STATS`).
    `small_images`: Faster R-CNN's proposal and RoI counts and RoI level rule for small canvases
    holding a handful of objects (False: torchvision's COCO defaults).
    """
    backbone = FeaturePyramid(model, out_channels, stride_range)
    levels = len(backbone.strides)
    anchors = AnchorGenerator(anchor_sizes(object_size, levels), (ASPECT_RATIOS,) * levels)
    in_chans = model.in_chans
    mean, std = PIXEL_STATS.get(in_chans, ((0.5,) * in_chans, (0.25,) * in_chans))
    common = dict(min_size=min_size, max_size=max_size or min_size,
                  image_mean=list(image_mean or mean), image_std=list(image_std or std),
                  size_divisible=backbone.size_divisible)
    # torchvision counts the background as a class.
    if kind == "retinanet":
        # GroupNorm in the head, as in torchvision's RetinaNet v2: without it the head learns too
        # slowly for a few hundred steps (AP 0.9 -> 16 after 300 steps from a random ViT).
        head = RetinaNetHead(out_channels, anchors.num_anchors_per_location()[0], num_classes + 1,
                             norm_layer=partial(nn.GroupNorm, math.gcd(out_channels, 16)))
        return RetinaNet(backbone, num_classes + 1, anchor_generator=anchors, head=head, **common)
    if kind == "fasterrcnn":
        pool = _roi_pool(backbone, small_images)
        side = pool.output_size[0]
        width = BOX_HEAD_WIDTH if small_images else 1024
        return FasterRCNN(backbone, rpn_anchor_generator=anchors, box_roi_pool=pool,
                          box_head=TwoMLPHead(out_channels * side * side, width),
                          box_predictor=FastRCNNPredictor(width, num_classes + 1),
                          **(FASTER_RCNN_SMALL if small_images else {}), **common)
    raise ValueError(f"detector {kind!r} is not known; choose retinanet or fasterrcnn")
