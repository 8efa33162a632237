"""COCO 2017 transfer on a tiny COCO-format tree (vitnas.detection.fixture): category ids with
gaps mapped to labels and back, the 1x step schedule, detection at another size than the
backbone's training size, resume, and one-line errors for bad data. Seconds on a CPU."""
import json

import numpy as np
import pytest
import torch

from vitnas import cli, config
from vitnas.arch import Arch
from vitnas.data import DataError
from vitnas.detection.dataset import Categories, CocoDetectionSet, detection_paths, load_coco
from vitnas.detection.finetune import (AP_KEYS, DetectionBatches, finetune_and_evaluate, predict,
                                       train_detector)
from vitnas.detection.fixture import CATEGORIES, write_tiny_coco
from vitnas.detection.model import build_detector
from vitnas.families.vit.model import ViT

IDS = (1, 3, 7, 90)
MIN_SIZE, MAX_SIZE = 64, 96


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_tiny_coco(tmp_path_factory.mktemp("coco"), seed=0, train_images=8, val_images=4)


def transfer_cfg(root, **kw):
    return config.validate({"transfer": {
        "dataset": "coco", "root": str(root), "min_size": MIN_SIZE, "max_size": MAX_SIZE, "object_size": [12, 48],
        "steps": 2, "batch_size": 2, "channels": 32, "threads": 1} | kw})["transfer"]


def rgb_vit(patch=4, embed=32):
    torch.manual_seed(0)
    return ViT(Arch.uniform(patch, embed, 2, 2, 32, 64, family="vit"), 28, 3, 10)  # trained at 28 px


def test_category_ids_map_to_contiguous_labels_and_back():
    cats = Categories(IDS)
    assert cats.num_classes == 4
    assert cats.labels([90, 1, 7, 3]) == [4, 1, 3, 2]
    assert cats.category_ids(cats.labels(list(IDS))) == list(IDS)
    assert cats.category_ids([0, 5]) == [None, None]  # background / no category: dropped from results
    composed = Categories(tuple(range(1, 11)))  # the composed set: ids already 1..10
    assert composed.labels(range(1, 11)) == list(range(1, 11))


def test_fixture_is_a_coco_2017_tree_and_loads(coco_root, tmp_path):
    paths = detection_paths(transfer_cfg(coco_root))
    assert paths["train"] == (coco_root / "train2017", coco_root / "annotations/instances_train2017.json")
    raw = json.loads(paths["train"][1].read_text())
    assert sorted(c["id"] for c in raw["categories"]) == list(IDS) == sorted(CATEGORIES)
    assert any(a["iscrowd"] for a in raw["annotations"])
    annotated = {a["image_id"] for a in raw["annotations"]}
    assert any(im["id"] not in annotated for im in raw["images"])  # an image without objects
    assert {a["category_id"] for a in raw["annotations"]} == set(IDS)

    train = CocoDetectionSet(*paths["train"], channels=3)
    val = CocoDetectionSet(*paths["val"], channels=3, categories=train.categories)
    assert train.categories.ids == IDS and len(train) == 8 and len(val) == 4
    crowds = 0
    for i in range(len(train)):
        image, target = train[i]
        info = train.coco.loadImgs(target["image_id"])[0]
        assert image.shape == (3, info["height"], info["width"]) and 0 <= image.min() and image.max() <= 1
        anns = train.coco.loadAnns(train.coco.getAnnIds(imgIds=target["image_id"]))
        kept = [a for a in anns if not a["iscrowd"]]
        crowds += len(anns) - len(kept)
        assert target["labels"].tolist() == train.categories.labels([a["category_id"] for a in kept])
        assert target["boxes"].shape == (len(kept), 4)
    assert crowds == 1 and len(train[len(train) - 1][1]["boxes"]) == 0
    # Deterministic in the seed, images included.
    again = write_tiny_coco(tmp_path / "again", seed=0, train_images=8, val_images=4)
    assert (again / "annotations/instances_train2017.json").read_bytes() == paths["train"][1].read_bytes()
    name = raw["images"][0]["file_name"]
    assert (again / "train2017" / name).read_bytes() == (coco_root / "train2017" / name).read_bytes()


def test_position_embeddings_resample_to_the_detection_size_and_stay_as_trained():
    from vitnas.families.resnas.model import ResNASViT
    from vitnas.families.resnas.space import ResNASSpace, StageChoices

    stage = lambda e: StageChoices((e,), (1,), 16, (2 * e,), 2, ())
    space = ResNASSpace(patch=4, stem_channels=4, residual=True, stages=(stage(16), stage(32)),
                        img_size=28, in_chans=3, num_classes=10)
    torch.manual_seed(0)
    for net in (rgb_vit(), ResNASViT(space.largest(), 28, 3, 10)):
        net.eval()
        trained = {k: v.clone() for k, v in net.state_dict().items() if "pos_embed" in k}
        x = torch.rand(1, 3, 28, 28)
        with torch.no_grad():
            logits = net(x)
            det = build_detector(net, "retinanet", 4, 96, max_size=160)
            det.eval()
            out = det([torch.rand(3, 120, 200)])  # larger than 28 px, not square
            assert len(out) == 1 and (out[0]["boxes"][:, 2] <= 200).all()
            grid = det.backbone.body.forward_intermediates(torch.rand(1, 3, 96, 160), intermediates_only=True)[-1]
            assert tuple(grid.shape[-2:]) == (96 // net.feature_info[-1]["reduction"],
                                              160 // net.feature_info[-1]["reduction"])
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in trained.items())
        with torch.no_grad():  # the classifier's path at the training size is untouched
            net.head = det.backbone.body.head = torch.nn.Identity()
            assert torch.equal(net.forward_features(x), det.backbone.body.forward_features(x))
        assert logits.shape == (1, 10)


def test_position_embedding_is_not_resampled_at_the_training_size(monkeypatch):
    import vitnas.families.vit.model as vit_model

    net = rgb_vit().eval()
    calls = []
    real = vit_model.resample_abs_pos_embed
    monkeypatch.setattr(vit_model, "resample_abs_pos_embed", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    with torch.no_grad():
        net(torch.rand(1, 3, 28, 28))
        assert calls == []
        net.forward_intermediates(torch.rand(1, 3, 64, 96))
    assert calls == [(16, 24)]


def test_step_schedule_decays_at_the_given_epochs(coco_root, tmp_path):
    """1x-style: lr x 0.1 from the first step of epoch 1.5 and of epoch 2 (4 steps per epoch)."""
    train = CocoDetectionSet(*detection_paths(transfer_cfg(coco_root))["train"], channels=3)
    det = build_detector(rgb_vit(), "retinanet", 4, MIN_SIZE, (12, 48), 16, max_size=MAX_SIZE)
    log = train_detector(det, train, None, 2, 1e-3, 0.0, 0, tmp_path, epochs=2.5, schedule="step",
                         lr_steps=[1.5, 2], warmup_steps=0)
    assert [r["step"] for r in log] == [10]  # 2.5 epochs of 8 // 2 = 4 steps
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["step"] == 10
    from timm.scheduler import MultiStepLRScheduler

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = MultiStepLRScheduler(opt, decay_t=[1], decay_rate=0.1, t_in_epochs=False)
    sched.load_state_dict(state["scheduler"])
    lrs = [sched._get_lr(t)[0] for t in range(10)]
    assert lrs[:6] == [1e-3] * 6  # steps 0..5
    assert lrs[6:8] == pytest.approx([1e-4] * 2) and lrs[8:] == pytest.approx([1e-5] * 2)


def test_finetune_and_coco_evaluation_in_category_ids(coco_root, tmp_path):
    cfg = transfer_cfg(coco_root, schedule="step", lr_steps=[0.5], hflip=0.5)
    out = finetune_and_evaluate(rgb_vit(), cfg, None, 0, tmp_path / "ft", progress=False)
    assert set(AP_KEYS) <= set(out) and out["steps"] == 2 and np.isfinite(out["train_loss_last"])
    assert all(out[k] is None or 0.0 <= out[k] <= 100.0 for k in AP_KEYS)
    assert out["APl"] is None  # no box over 96^2 px

    # Results carry COCO's category ids (an untrained head, every score kept).
    paths = detection_paths(cfg)
    train = CocoDetectionSet(*paths["train"], channels=3)
    val = CocoDetectionSet(*paths["val"], channels=3, categories=train.categories)
    det = build_detector(rgb_vit(), "fasterrcnn", 4, MIN_SIZE, (12, 48), 16, max_size=MAX_SIZE, small_images=False)
    det.roi_heads.score_thresh = 0.0
    results = predict(det, val, 2)
    assert results and {r["category_id"] for r in results} <= set(IDS)
    assert {r["image_id"] for r in results} <= set(val.ids)

    class Labels(torch.nn.Module):  # one box per label 0..4 on every image
        def forward(self, images):
            return [{"boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0]] * 5), "scores": torch.linspace(1, 0.5, 5),
                     "labels": torch.arange(5)} for _ in images]

    results = predict(Labels(), val, 3)
    assert [r["category_id"] for r in results] == list(IDS) * len(val)  # label 0 (background) dropped
    assert results[0]["bbox"] == [1.0, 2.0, 10.0, 20.0] and results[0]["image_id"] == val.ids[0]


def test_flips_mirror_boxes_and_follow_the_step(coco_root):
    train = CocoDetectionSet(*detection_paths(transfer_cfg(coco_root))["train"], channels=3)
    plain, flipped = DetectionBatches(train, 4, 0), DetectionBatches(train, 4, 0, hflip=1.0)
    (im0, t0), _ = plain.get(1)
    (im1, t1), _ = flipped.get(1)
    for a, b, ta, tb in zip(im0, im1, t0, t1):
        assert torch.equal(a.flip(-1), b)
        w = a.shape[-1]
        assert torch.equal(tb["boxes"][:, [0, 2]], w - ta["boxes"][:, [2, 0]])
        assert torch.equal(tb["boxes"][:, [1, 3]], ta["boxes"][:, [1, 3]])
    half = DetectionBatches(train, 4, 0, hflip=0.5)
    assert [torch.equal(x, y) for x, y in zip(half.get(3)[0][0], half.get(3)[0][0])] == [True] * 4


def test_interrupted_finetune_resumes_to_the_same_weights(coco_root, tmp_path, monkeypatch):
    cfg = transfer_cfg(coco_root)
    train = CocoDetectionSet(*detection_paths(cfg)["train"], channels=3)
    kw = dict(epochs=2, schedule="step", lr_steps=[1.5], warmup_steps=2, hflip=0.5)

    def detector():
        torch.manual_seed(0)
        return build_detector(rgb_vit(), "retinanet", 4, MIN_SIZE, (12, 48), 16, max_size=MAX_SIZE)

    straight = detector()
    train_detector(straight, train, None, 2, 1e-3, 0.05, 0, tmp_path / "a", **kw)

    real_make = DetectionBatches.make

    def killed_at_step_5(self, step):
        if step == 5:
            raise KeyboardInterrupt
        return real_make(self, step)

    monkeypatch.setattr(DetectionBatches, "make", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_detector(detector(), train, None, 2, 1e-3, 0.05, 0, tmp_path / "b", **kw)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["step"] == 4  # the epoch-end checkpoint
    monkeypatch.setattr(DetectionBatches, "make", real_make)
    resumed = detector()
    train_detector(resumed, train, None, 2, 1e-3, 0.05, 0, tmp_path / "b", **kw)
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_worker_processes_make_the_same_batches(coco_root, tmp_path):
    """Images decoded by DataLoader workers, Faster R-CNN's sampling seeded in the training process:
    the same weights as without workers."""
    train = CocoDetectionSet(*detection_paths(transfer_cfg(coco_root))["train"], channels=3)
    weights = []
    for workers in (0, 2):
        torch.manual_seed(0)
        det = build_detector(rgb_vit(), "fasterrcnn", 4, MIN_SIZE, (12, 48), 16, max_size=MAX_SIZE)
        train_detector(det, train, 3, 2, 1e-3, 0.05, 0, tmp_path / str(workers), hflip=0.5, workers=workers)
        weights.append(det.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# ------------------------------------------------------------------------------ bad data, one line
def _transfer_cli(tmp_path, root, model="missing.safetensors"):
    cfg = json.dumps({"transfer": {"dataset": "coco", "root": str(root), "min_size": MIN_SIZE, "steps": 1}})
    return ["transfer", "--config", "config/config.yaml", cfg, "--space", "vit", "--name", "evo-4M",
            "--model", str(model), "--out", str(tmp_path / "out" / "coco_eval.json"),
            "--checkpoints", str(tmp_path / "ckpt")]


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_missing_coco_folders_stop_the_job_at_its_start(tmp_path, capsys):
    (tmp_path / "coco" / "train2017").mkdir(parents=True)
    err = _one_line_error(capsys, _transfer_cli(tmp_path, tmp_path / "coco"))
    assert str(tmp_path / "coco") in err and "transfer.root" in err
    assert "val2017/" in err and "annotations/instances_train2017.json" in err
    assert "annotations/instances_val2017.json" in err and "train2017/," not in err.split("lacks")[1].split(";")[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "ckpt").exists()


@pytest.fixture
def saved_model(tmp_path):
    """A retrained-model file for the default config's vit space (28 px, grey)."""
    from safetensors.torch import save_file
    from vitnas.families import build_model
    from vitnas.families import build_space

    cfg = config.for_space(config.load("config/config.yaml"), "vit")
    arch = build_space(cfg).largest()
    state = {k: v.contiguous() for k, v in build_model(arch, build_space(cfg)).state_dict().items()}
    save_file(state, str(tmp_path / "m.safetensors"), metadata={"arch": arch.to_json(), "format": "vitnas-vit"})
    return tmp_path / "m.safetensors"


@pytest.mark.parametrize("damage, expected", [
    (lambda text, d: "{not json", "is not valid JSON"),
    (lambda text, d: json.dumps({k: v for k, v in d.items() if k != "categories"}),
     'needs the lists "images", "annotations" and "categories"'),
    (lambda text, d: json.dumps(d | {"categories": [c for c in d["categories"] if c["id"] != 90]}),
     "category_id 90, which \"categories\" does not define"),
], ids=["bad-json", "no-categories", "undefined-category"])
def test_bad_annotation_files_stop_with_one_line(coco_root, tmp_path, capsys, saved_model, damage, expected):
    import shutil

    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    ann = root / "annotations" / "instances_train2017.json"
    text = ann.read_text()
    ann.write_text(damage(text, json.loads(text)))
    err = _one_line_error(capsys, _transfer_cli(tmp_path, root, saved_model))
    assert str(ann) in err and expected in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="annotations file .* not found"):
        load_coco(root / "annotations" / "nothing.json")


def test_coco_needs_a_root_and_composed_needs_its_folder():
    with pytest.raises(config.ConfigError, match="transfer.root: not set"):
        detection_paths(config.validate({"transfer": {"dataset": "coco"}})["transfer"])
    with pytest.raises(config.ConfigError, match="--detection"):
        detection_paths(config.validate({})["transfer"])
