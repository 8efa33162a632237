"""The COCO-transfer stage: composed detection set, COCO loader, ViT feature pyramid, detectors,
fine-tuning and the COCOeval wrapper. Tiny ViTs and synthetic items keep it to seconds on a CPU."""
import json

import numpy as np
import pytest
import torch

from vitnas import config
from vitnas.arch import Arch
from vitnas.detection.compose import FASHION_CLASSES, THRESHOLD, compose_split, write_split
from vitnas.detection.dataset import CocoDetectionSet, coco_from_dict, load_coco
from vitnas.detection.finetune import (DetectionBatches, coco_evaluate, detections_to_coco,
                                       finetune_and_evaluate, train_detector)
from vitnas.detection.model import FeaturePyramid, anchor_sizes, build_detector
from vitnas.families.vit.model import ViT

CANVAS = 64
OBJECTS = (2, 4)
OBJECT_SIZE = (14, 32)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the other core is busy; one thread is also deterministic


@pytest.fixture(scope="module")
def items():
    """40 28x28 'items': a bright rectangle of random size and place on black, random labels."""
    rng = np.random.default_rng(0)
    images = np.zeros((40, 28, 28), dtype=np.uint8)
    for img in images:
        h, w = rng.integers(6, 24, size=2)
        y, x = rng.integers(0, 28 - h + 1), rng.integers(0, 28 - w + 1)
        img[y:y + h, x:x + w] = rng.integers(120, 256)
    return images, rng.integers(0, 10, size=40)


def _compose(items, n, seed):
    return compose_split(*items, n, CANVAS, OBJECTS, OBJECT_SIZE, seed)


@pytest.fixture(scope="module")
def det_dir(items, tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    for split, n, seed in (("train", 8, 1), ("val", 4, 2)):
        write_split(root, split, *_compose(items, n, seed))
    return root


def tiny_vit(patch=4, embed=32):
    torch.manual_seed(0)
    return ViT(Arch.uniform(patch, embed, 2, 2, 32, 64, family="vit"), 28, 1, 10)


def test_composed_boxes_are_inside_disjoint_and_tight(items):
    canvases, coco = _compose(items, 30, seed=3)
    assert canvases.shape == (30, CANVAS, CANVAS) and canvases.dtype == np.uint8
    assert [img["id"] for img in coco["images"]] == list(range(1, 31))
    assert coco["images"][11]["file_name"] == "000012.png"
    assert [c["name"] for c in coco["categories"]] == FASHION_CLASSES
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1))
    counts = []
    for img, canvas in zip(coco["images"], canvases):
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        counts.append(len(anns))
        covered = np.zeros_like(canvas, dtype=bool)
        for a in anns:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= CANVAS and y + h <= CANVAS
            assert a["area"] == w * h and a["iscrowd"] == 0 and 1 <= a["category_id"] <= 10
            assert not covered[y:y + h, x:x + w].any(), "boxes overlap"
            covered[y:y + h, x:x + w] = True
            # Tight: every edge row and column of the box holds an object pixel.
            patch = canvas[y:y + h, x:x + w] > THRESHOLD
            assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()
            assert max(w, h) <= OBJECT_SIZE[1]
        assert not canvas[~covered].any(), "an object pixel lies outside every box"
    # An item is skipped only when no free place is found (rare): counts stay within the range,
    # bar the odd crowded canvas.
    assert min(counts) >= 1 and max(counts) <= OBJECTS[1]
    assert np.mean([OBJECTS[0] <= c for c in counts]) >= 0.9 and len(set(counts)) > 1


def test_compose_is_deterministic_in_the_seed(items):
    a, coco_a = _compose(items, 6, seed=5)
    b, coco_b = _compose(items, 6, seed=5)
    c, coco_c = _compose(items, 6, seed=6)
    assert np.array_equal(a, b) and coco_a == coco_b
    assert not np.array_equal(a, c) and coco_a["annotations"] != coco_c["annotations"]


def test_compose_rejects_objects_larger_than_the_canvas(items):
    with pytest.raises(ValueError, match="object_size"):
        compose_split(*items, 1, 20, OBJECTS, (14, 32), seed=0)


def test_written_split_round_trips_through_pycocotools_and_the_dataset(items, tmp_path):
    canvases, coco = _compose(items, 5, seed=7)
    ann_file = write_split(tmp_path, "val", canvases, coco)
    assert ann_file == tmp_path / "instances_val.json"
    names = sorted(p.name for p in (tmp_path / "val").iterdir())
    assert names == [f"{i:06d}.png" for i in range(1, 6)]
    assert not list(tmp_path.rglob("*.tmp"))
    api = load_coco(ann_file)
    assert len(api.getImgIds()) == 5 and len(api.getAnnIds()) == len(coco["annotations"])

    for channels in (1, 3):
        ds = CocoDetectionSet(tmp_path / "val", ann_file, channels=channels)
        assert len(ds) == 5
        for i, canvas in enumerate(canvases):
            image, target = ds[i]
            assert image.shape == (channels, CANVAS, CANVAS) and image.dtype == torch.float32
            assert torch.allclose(image[-1], torch.from_numpy(canvas / 255.0).float())
            anns = [a for a in coco["annotations"] if a["image_id"] == target["image_id"]]
            xyxy = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
            assert target["image_id"] == i + 1
            assert target["boxes"].tolist() == xyxy
            assert target["labels"].tolist() == [a["category_id"] for a in anns]
            assert target["labels"].dtype == torch.int64


def test_dataset_keeps_images_without_annotations_and_drops_crowds(items, tmp_path):
    canvases, coco = _compose(items, 2, seed=8)
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] == 1]
    coco["annotations"][0]["iscrowd"] = 1
    write_split(tmp_path, "train", canvases, coco)
    ds = CocoDetectionSet(tmp_path / "train", tmp_path / "instances_train.json")
    assert len(ds) == 2
    assert len(ds[0][1]["boxes"]) == len(coco["annotations"]) - 1
    assert ds[1][1]["boxes"].shape == (0, 4) and ds[1][1]["labels"].shape == (0,)


@pytest.mark.parametrize("patch, strides", [(4, [4, 8, 16]), (8, [4, 8, 16]), (7, [7, 14])])
def test_feature_pyramid_strides_and_shapes(patch, strides):
    fpn = FeaturePyramid(tiny_vit(patch), out_channels=24)
    side = -(-CANVAS // fpn.size_divisible) * fpn.size_divisible  # as the detector pads it
    features = fpn(torch.rand(2, 1, side, side))
    assert fpn.strides == strides and list(features) == [str(s) for s in strides]
    assert fpn.out_channels == 24
    for s, f in zip(strides, features.values()):
        assert f.shape == (2, 24, side // s, side // s)


def test_anchor_sizes_span_the_object_range():
    sizes = anchor_sizes(OBJECT_SIZE, levels=3)
    flat = [s for level in sizes for s in level]
    assert len(sizes) == 3 and all(len(level) == 3 for level in sizes)
    assert flat == sorted(flat) and flat[0] == OBJECT_SIZE[0] / 2 and flat[-1] == OBJECT_SIZE[1]


@pytest.mark.parametrize("kind", ["retinanet", "fasterrcnn"])
def test_detector_trains_and_predicts_on_grey_canvases(kind):
    det = build_detector(tiny_vit(), kind, num_classes=10, min_size=CANVAS)
    assert det.transform.min_size == (CANVAS,) and det.transform.max_size == CANVAS
    images = [torch.rand(1, CANVAS, CANVAS) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[3.0, 4.0, 20.0, 30.0], [30.0, 30.0, 60.0, 50.0]]),
                "labels": torch.tensor([1, 10])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    det.train()
    losses = det(images, targets)
    assert len(losses) >= 2 and all(torch.isfinite(v) and v >= 0 for v in losses.values())
    sum(losses.values()).backward()
    assert det.backbone.body.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # backbone is tuned

    det.eval()
    if kind == "retinanet":
        det.score_thresh = 0.0  # an untrained RetinaNet scores below the default 0.05
    with torch.no_grad():
        outputs = det(images)
    for out in outputs:
        boxes = out["boxes"]
        assert len(boxes) > 0 and boxes.shape[1] == 4
        assert (boxes >= 0).all() and (boxes <= CANVAS).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all()
        # RetinaNet's sigmoid head keeps torchvision's class 0, unused by the targets (and by
        # COCOeval, which scores the ground truth's categories only).
        assert ((out["labels"] >= (0 if kind == "retinanet" else 1)) & (out["labels"] <= 10)).all()


def test_unknown_detector_is_rejected():
    with pytest.raises(ValueError, match="retinanet or fasterrcnn"):
        build_detector(tiny_vit(), "yolo", 10, CANVAS)


def _ground_truth_as_detections(ds):
    """Every ground-truth box of `ds` as a torchvision-style detection with score 1."""
    ids, dets = [], []
    for i in range(len(ds)):
        _, t = ds[i]
        ids.append(t["image_id"])
        dets.append({"boxes": t["boxes"], "labels": t["labels"],
                     "scores": torch.ones(len(t["labels"]))})
    return ids, dets


def test_coco_evaluation_of_perfect_and_empty_detections(det_dir):
    ds = CocoDetectionSet(det_dir / "val", det_dir / "instances_val.json")
    results = detections_to_coco(*_ground_truth_as_detections(ds))
    gt = json.loads((det_dir / "instances_val.json").read_text())
    assert sorted(r["bbox"] for r in results) == sorted(a["bbox"] for a in gt["annotations"])

    perfect = coco_evaluate(ds.coco, results)
    assert perfect["AP"] == pytest.approx(100.0)
    assert perfect["AP50"] == pytest.approx(100.0) and perfect["AP75"] == pytest.approx(100.0)
    assert perfect["APl"] is None  # no box on a 64-px canvas is over 96^2 px
    assert all(v is None or v == pytest.approx(100.0) for v in perfect.values())

    empty = coco_evaluate(ds.coco, [])
    assert empty["AP"] == 0.0 and empty["APl"] is None

    # Half the boxes with the wrong class: AP drops below 100.
    for r in results[::2]:
        r["category_id"] = r["category_id"] % 10 + 1
    assert coco_evaluate(ds.coco, results)["AP"] < 100.0


def test_coco_evaluation_works_on_an_in_memory_dict():
    gt = coco_from_dict({"images": [{"id": 1, "width": 64, "height": 64, "file_name": "a.png"}],
                         "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                          "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0}],
                         "categories": [{"id": 1, "name": "x"}]})
    shifted = [{"image_id": 1, "category_id": 1, "bbox": [14.0, 10.0, 40.0, 40.0], "score": 0.9}]
    m = coco_evaluate(gt, shifted)  # IoU 36/44 = 0.82: a hit at IoU 0.5..0.8, a miss above
    assert m["AP50"] == pytest.approx(100.0) and m["AP75"] == pytest.approx(100.0)
    assert m["AP"] == pytest.approx(70.0, abs=0.5) and m["APm"] == pytest.approx(m["AP"])
    assert m["APs"] is None and m["APl"] is None


@pytest.mark.parametrize("kind", ["retinanet", "fasterrcnn"])
def test_short_finetune_returns_all_metrics_and_is_deterministic(det_dir, kind, tmp_path):
    cfg = config.validate({"transfer": {
        "detector": kind, "canvas": CANVAS, "objects": list(OBJECTS), "object_size": list(OBJECT_SIZE),
        "train_images": 8, "val_images": 4, "steps": 3, "batch_size": 4, "threads": 1}})["transfer"]
    vit = tiny_vit()
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    out = finetune_and_evaluate(vit, cfg, det_dir, 0, tmp_path / "first", progress=False)
    assert set(out) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "steps", "train_loss_last",
                        "detector"}
    assert out["steps"] == 3 and out["detector"] == kind
    assert np.isfinite(out["train_loss_last"]) and out["train_loss_last"] > 0
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert out[k] is None or 0.0 <= out[k] <= 100.0
    assert out["AP"] is not None and out["APl"] is None
    assert all(torch.equal(v, vit.state_dict()[k]) for k, v in before.items())  # a copy was tuned
    assert finetune_and_evaluate(vit, cfg, det_dir, 0, tmp_path / "second", progress=False) == out
    # Through engine.train: a finished run's checkpoint is picked up, not trained again.
    assert (tmp_path / "first" / "last.pt").is_file()
    assert finetune_and_evaluate(vit, cfg, det_dir, 0, tmp_path / "first", progress=False) == out


def test_faster_rcnn_pools_with_the_exact_scales_of_patch_7_strides():
    det = build_detector(tiny_vit(patch=7), "fasterrcnn", num_classes=10, min_size=CANVAS)
    pool = det.roi_heads.box_roi_pool
    det.eval()
    with torch.no_grad():
        det([torch.rand(1, CANVAS, CANVAS)])
    # torchvision would have inferred 1/8 and 1/16 (nearest powers of 2) on its first call.
    assert pool.scales == [1 / 7, 1 / 14]
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 40.0, 40.0]])
    assert pool.map_levels([boxes]).tolist() == [0, 1]  # small box: stride 7; large: stride 14


def test_batches_are_a_seeded_function_of_the_step(det_dir):
    train = CocoDetectionSet(det_dir / "train", det_dir / "instances_train.json", 1)
    stream = DetectionBatches(train, 4, seed=0)
    assert stream.steps_per_epoch == len(train) // 4 == 2
    ids = lambda step: [t["boxes"].sum().item() for t in stream.get(step)[0][1]]
    epoch = [ids(s) for s in range(2)]
    assert len({x for b in epoch for x in b}) == 8  # an epoch: every image once
    assert [ids(s) for s in range(2)] == epoch  # the same images again, whatever came before
    assert ids(2) != epoch[0] or ids(3) != epoch[1]  # a new permutation next epoch
    half = DetectionBatches(train, 4, seed=0, rank=1, world=2)  # rank 1 of 2: its share
    assert [t["boxes"].sum().item() for t in half.get(0)[0][1]] == epoch[0][1::2]


def test_backbone_learns_at_its_own_rate(det_dir, tmp_path):
    """backbone_lr_scale = 0 freezes the pretrained ViT; the pyramid and heads still learn."""
    torch.manual_seed(0)
    detector = build_detector(tiny_vit(), "retinanet", 10, CANVAS, OBJECT_SIZE)
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    train = CocoDetectionSet(det_dir / "train", det_dir / "instances_train.json", 1)
    train_detector(detector, train, steps=2, batch_size=4, lr=1e-3, weight_decay=0.05, seed=0,
                   ckpt_dir=tmp_path, backbone_lr_scale=0.0)
    after = detector.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone.body."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))


def test_multi_stage_backbone_feeds_its_stage_outputs_through_an_fpn():
    """A ViT-ResNAS network: one map per stage (strides 4, 8, 16) through torchvision's FPN."""
    from vitnas.families.resnas.model import ResNASViT
    from vitnas.families.resnas.space import ResNASSpace, StageChoices

    stage = lambda e: StageChoices((e,), (1,), 16, (2 * e,), 2, ())
    space = ResNASSpace(patch=4, stem_channels=4, residual=True, stages=(stage(16), stage(32), stage(48)),
                        img_size=28, in_chans=1, num_classes=10)
    net = ResNASViT(space.largest(), 28, 1, 10)
    fpn = FeaturePyramid(net, out_channels=16)
    assert fpn.strides == [4, 8, 16] and fpn.fpn is not None
    features = fpn(torch.rand(2, 1, CANVAS, CANVAS))
    assert [tuple(f.shape) for f in features.values()] == [(2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4)]
    det = build_detector(ResNASViT(space.largest(), 28, 1, 10), "retinanet", 10, CANVAS)
    det.eval()
    with torch.no_grad():
        assert len(det([torch.rand(1, CANVAS, CANVAS)])) == 1
