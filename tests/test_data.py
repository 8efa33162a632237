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
    images, labels = data.load_split(tmp_path / "data", "search")
    raw_images, raw_labels = data.read_fashion_mnist(fake_fmnist)["train"]
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
