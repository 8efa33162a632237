"""Data stage: IDX reading, the three splits, and the missing-data message."""
import numpy as np
import pandas as pd
import pytest

from conftest import run
from vitnas import config, data


def prepare(root, tmp_path, **over):
    cfg = config.validate({"data": {"root": str(root), **over}, "seed": 3})
    manifest = data.prepare(cfg, tmp_path / "data")
    return cfg, manifest


def test_splits_are_disjoint_stratified_and_cover(fake_fmnist, tmp_path):
    _, manifest = prepare(fake_fmnist, tmp_path, search_per_class=5)
    by = {s: manifest[manifest.split == s] for s in data.SPLITS}
    train_idx, search_idx = set(by["train"]["index"]), set(by["search"]["index"])
    assert not train_idx & search_idx                              # held-out split carved from train
    assert train_idx | search_idx == set(range(600))               # together: all of train
    assert (by["search"].source == "train").all() and (by["test"].source == "test").all()
    assert set(by["test"]["index"]) == set(range(200))             # test: all of t10k, nothing else
    assert by["search"].label.value_counts().tolist() == [5] * 10  # stratified
    split = data.load_split(tmp_path / "data", "search")
    images, labels = split.images, split.labels
    raw_images, raw_labels, _ = data.read_fashion_mnist(fake_fmnist)["train"]
    idx = by["search"]["index"].to_numpy()
    np.testing.assert_array_equal(images, raw_images[idx])
    np.testing.assert_array_equal(labels, raw_labels[idx])


def test_limits_are_class_balanced_and_seeded(fake_fmnist, tmp_path):
    _, m1 = prepare(fake_fmnist, tmp_path / "a", search_per_class=5, train_limit=100, test_limit=50)
    _, m2 = prepare(fake_fmnist, tmp_path / "b", search_per_class=5, train_limit=100, test_limit=50)
    pd.testing.assert_frame_equal(m1, m2)
    assert m1[m1.split == "train"].label.value_counts().tolist() == [10] * 10
    assert m1[m1.split == "test"].label.value_counts().tolist() == [5] * 10


def test_too_large_hold_out_is_refused(fake_fmnist, tmp_path):
    with pytest.raises(data.DataError, match="exceeds the 60 training images of class 0"):
        prepare(fake_fmnist, tmp_path, search_per_class=61)


def test_corrupt_idx_is_reported(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x0d\x03junk")
    with pytest.raises(data.DataError, match="not a valid IDX file"):
        data.read_idx(bad)


def test_missing_data_set_says_how_to_get_it(tmp_path):
    out = tmp_path / "out"
    r = run(["vitnas", "prepare-data", "--config", f'{{"data": {{"root": "{tmp_path}"}}}}',
             "--out", str(out)])
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "apt-get install dataset-fashion-mnist" in r.stderr and "data.root" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    """A three-class ImageNet-style tree: train/<class>/*.JPEG and val/<class>/*.png."""
    from PIL import Image
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for folder, n in (("train", 8), ("val", 3)):
        for c, wnid in enumerate(("n01", "n02", "n03")):
            (root / folder / wnid).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                pixels[..., c] = 255  # the class is the saturated colour channel
                ext = "JPEG" if folder == "train" else "png"
                Image.fromarray(pixels).save(root / folder / wnid / f"{wnid}_{i}.{ext}")
    return root


def test_image_folders_split_into_paths(image_folders, tmp_path):
    cfg = config.validate({"data": {"dataset": "imagenet", "root": str(image_folders),
                                    "search_per_class": 2}})
    data.check_source(cfg)
    manifest = data.prepare(cfg, tmp_path)
    assert manifest.groupby("split").size().to_dict() == {"search": 6, "test": 9, "train": 18}
    search = data.load_split(tmp_path, "search", "imagenet")
    assert not search.in_memory and search.channels == 3
    assert search.labels.tolist().count(0) == 2 and all("/train/" in p for p in search.images)
    test = data.load_split(tmp_path, "test", "imagenet")
    assert all("/val/" in p for p in test.images) and sorted(set(test.labels)) == [0, 1, 2]
    assert search.pil(0).mode == "RGB" and search.pil(0).size == (48, 40)


def test_folder_batches_and_evaluation(image_folders, tmp_path):
    import torch
    from vitnas.batches import TrainBatches
    from vitnas.loader import EvalImages
    cfg = config.validate({"data": {"dataset": "imagenet", "root": str(image_folders),
                                    "search_per_class": 2}})
    data.prepare(cfg, tmp_path)
    train = data.load_split(tmp_path, "train", "imagenet")
    x, y = TrainBatches(train, 6, cfg["supernet"]["augment"], 32, 1000, seed=0).get(0)
    assert x.shape == (6, 3, 32, 32) and y.shape == (6, 1000)  # CutMix: soft targets
    batches = list(EvalImages.decode(data.load_split(tmp_path, "test", "imagenet"), 32).batches(4, torch.device("cpu")))
    assert [b[0].shape for b in batches] == [(4, 3, 32, 32), (4, 3, 32, 32), (1, 3, 32, 32)]
    assert torch.cat([b[1] for b in batches]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_missing_image_folders_are_explained(tmp_path):
    cfg = config.validate({"data": {"dataset": "imagenet", "root": str(tmp_path)}})
    with pytest.raises(data.DataError, match="train/<class>/\\*.JPEG"):
        data.check_source(cfg)
