"""Paper-scale data paths on a tiny ImageNet-style tree of real JPEGs (one of them corrupt): class
subsets, held-out lists, class-balanced scoring subsets, the held-out split decoded once, the
training stream in worker processes, corrupt files, and the messages for bad data."""
import gzip
import json

import numpy as np
import pytest
import torch
from timm.data import create_transform

from conftest import run, write_idx
from vitnas import config, data, loader
from vitnas.batches import TrainBatches
from vitnas.fixtures import write_tiny_imagenet
from vitnas.spaces import data_info


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tiny_imagenet(tmp_path_factory.mktemp("imagenet"), classes=4, train_per_class=12,
                               val_per_class=4, corrupt=1)


def cfg_for(tree, **data_over):
    return config.validate({"seed": 3, "data": {"dataset": "imagenet", "root": tree["root"], "search_per_class": 2,
                                                "max_corrupt_fraction": 0.1, **data_over}})


def test_class_subset_keeps_the_listed_classes_in_sorted_order(tree, tmp_path):
    (tmp_path / "classes.txt").write_text(f"# two of four\n{tree['classes'][3]}\n{tree['classes'][1]}  # a comment\n")
    cfg = cfg_for(tree, classes=str(tmp_path / "classes.txt"))
    assert data_info(cfg["data"])["num_classes"] == 2
    manifest = data.prepare(cfg, tmp_path / "data")
    assert manifest.groupby("split").size().to_dict() == {"search": 4, "test": 8, "train": 20}
    ids = manifest[manifest.split == "train"]
    assert set(ids.label) == {0, 1}
    assert all(i.startswith(tree["classes"][1]) for i in ids[ids.label == 0]["id"])  # sorted: n..1 -> 0
    assert all(i.startswith(tree["classes"][3]) for i in ids[ids.label == 1]["id"])
    missing = cfg_for(tree, classes=["n00000001", "n99999999"])
    with pytest.raises(data.DataError, match="data.classes: 1 class.*n99999999"):
        data.check_source(missing)


def test_held_out_list_written_by_data_prep_fixes_the_search_split(tree, tmp_path):
    first = data.prepare(cfg_for(tree), tmp_path / "a")
    listed = (tmp_path / "a" / "held_out.txt").read_text().split()
    assert listed == first[first.split == "search"]["id"].tolist() and len(listed) == 8
    assert all("/" in i and i.endswith(".JPEG") for i in listed)  # paths under train/
    # Another seed would draw other images; the list makes it hold out the same ones.
    again = data.prepare(cfg_for(tree, held_out_list=str(tmp_path / "a" / "held_out.txt")) | {"seed": 9},
                         tmp_path / "b")
    assert again[again.split == "search"]["id"].tolist() == listed
    assert not set(again[again.split == "train"]["id"]) & set(listed)
    # ViT-ResNAS's published list names files only.
    (tmp_path / "names.txt").write_text("\n".join(i.split("/")[1] for i in listed[:3]) + "\n")
    named = data.prepare(cfg_for(tree, held_out_list=str(tmp_path / "names.txt")), tmp_path / "c")
    assert sorted(named[named.split == "search"]["id"]) == sorted(listed[:3])
    (tmp_path / "bad.txt").write_text(listed[0] + "\nn00000002/n00000002_99.JPEG\n")
    with pytest.raises(data.DataError, match=r"held_out_list: 1 of the 2 images .*bad.txt.*n00000002_99"):
        data.prepare(cfg_for(tree, held_out_list=str(tmp_path / "bad.txt")), tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_scoring_subsets_are_class_balanced_and_fixed_by_the_seed():
    labels = np.repeat(np.arange(5), 20)  # sorted by class, as an ImageNet folder list is
    split = data.Split(np.arange(100).astype(str), labels, (0.5,) * 3, (0.5,) * 3)
    sub = split.subset(15, seed=0)
    assert np.bincount(sub.labels).tolist() == [3] * 5  # not the first 15 (class 0 only)
    assert np.array_equal(sub.images, split.subset(15, seed=0).images)
    assert not np.array_equal(sub.images, split.subset(15, seed=1).images)
    assert len(split.subset(None, 0)) == 100 and len(split.subset(500, 0)) == 100


def test_held_out_split_is_decoded_once_as_the_eval_transform_gives_it(tree, tmp_path, capsys):
    data.prepare(cfg_for(tree), tmp_path)
    test = data.load_split(tmp_path, "test", "imagenet")
    images = loader.EvalImages.decode(test, 32, workers=2)
    assert images.images.dtype == torch.uint8 and images.images.shape == (16, 3, 32, 32)
    transform = create_transform(input_size=(3, 32, 32), is_training=False, mean=test.mean, std=test.std)
    expected = torch.stack([transform(test.pil(i)) for i in range(len(test))])
    got = torch.cat([x for x, _ in images.batches(5, torch.device("cpu"))])
    # The same uint8 pixels normalised in another order (x / 255 - mean) / std: a few float32
    # roundings of values up to max |x|, whatever the CPU.
    torch.testing.assert_close(got, expected, rtol=0, atol=4 * torch.finfo(torch.float32).eps * float(expected.abs().max()))
    assert images.labels.tolist() == test.labels.tolist()
    # A score from the decoded tensor is the accuracy of the predictions.
    forward = lambda x: torch.nn.functional.one_hot(torch.arange(len(x)) % 4, 4).float()
    assert loader.accuracy(forward, images, 16, torch.device("cpu")) == pytest.approx(100 * np.mean(
        (np.arange(16) % 4) == test.labels))


def with_corrupt(tree, split_name="train"):
    """A split of paths holding the tree's corrupt JPEG (a cut-off file)."""
    paths = [tree["corrupt"][0]] + [f"{tree['root']}/train/{c}/{c}_{i}.JPEG" for c in tree["classes"] for i in range(3)]
    labels = np.array([0] + [k for k in range(4) for _ in range(3)])
    return data.Split(np.array(paths), labels, *data.STATS["imagenet"])


def test_corrupt_jpeg_is_skipped_counted_and_stops_past_the_threshold(tree, capsys):
    split = with_corrupt(tree)
    images = loader.EvalImages.decode(split, 32, max_corrupt=0.1)
    assert len(images) == 12 and images.labels.tolist() == split.labels[1:].tolist()
    err = capsys.readouterr().err
    assert err.count("WARNING: skipped a corrupt image") == 1 and tree["corrupt"][0] in err
    with pytest.raises(data.DataError, match=r"1 of the 13 images of the search split are corrupt .*"
                                             r"data.max_corrupt_fraction = 0.05.*raise data.max_corrupt_fraction"):
        loader.EvalImages.decode(split, 32, max_corrupt=0.05)


def test_training_stream_from_workers_equals_the_in_process_one_and_replaces_corrupt_files(tree, capsys):
    split = with_corrupt(tree)
    aug = config.validate({})["retrain"]["augment"]  # RandAugment, colour jitter, erasing: per image
    make = lambda workers, bad: TrainBatches(split, 4, aug | {"cutmix": 1.0}, 32, 4, seed=7, workers=workers,
                                              max_corrupt=bad)
    inline, pooled = make(0, 0.1), make(2, 0.1)
    a = list(loader.steps(inline, 0, 9, inline.workers))  # 3 epochs: the corrupt file is met
    b = list(loader.steps(pooled, 0, 9, pooled.workers))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert all(x.shape == (4, 3, 32, 32) for x, _ in a)  # the batch keeps its size
    assert inline.bad.seen == pooled.bad.seen and len(pooled.bad.seen) == 1
    assert "skipped a corrupt image of the train split" in capsys.readouterr().err
    strict = make(2, 0.0)
    with pytest.raises(data.DataError, match="1 of the 13 images of the train split are corrupt"):
        list(loader.steps(strict, 0, 9, strict.workers))


def test_auto_workers_serve_files_and_leave_arrays_in_process(tree, tmp_path):
    arrays = data.Split(np.zeros((4, 28, 28), np.uint8), np.arange(4), *data.STATS["fashion_mnist"])
    assert loader.resolve_workers({"workers": "auto"}, arrays) == 0
    assert loader.resolve_workers({"workers": "auto"}, with_corrupt(tree)) == loader.job_cpus()
    assert loader.resolve_workers({"workers": 3}, arrays) == 3


def test_truncated_gz_idx_file_is_named_in_one_line(fake_fmnist, tmp_path):
    root = tmp_path / "fm"
    root.mkdir()
    for f in fake_fmnist.iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    whole = (root / "train-images-idx3-ubyte.gz").read_bytes()
    (root / "train-images-idx3-ubyte.gz").write_bytes(whole[:len(whole) // 2])
    out = tmp_path / "out"
    r = run(["vitnas", "prepare-data", "--config", json.dumps({"data": {"root": str(root)}}), "--out", str(out)])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert f"{root}/train-images-idx3-ubyte.gz is truncated or corrupt" in r.stderr and "re-download" in r.stderr
    assert not out.exists()
    # A plain IDX file cut short: its header promises more than it holds.
    write_idx(root / "x.gz", np.zeros((10, 4, 4)))
    with gzip.open(root / "x.gz") as f:
        (root / "x").write_bytes(f.read()[:-5])
    with pytest.raises(data.DataError, match="truncated: its header promises 160 bytes of data, it holds 155"):
        data.read_idx(root / "x")


@pytest.mark.slow
def test_batch_larger_than_the_training_split_is_a_config_error(fake_fmnist, tmp_path):
    base = {"data": {"root": str(fake_fmnist), "search_per_class": 5, "train_limit": 100}}
    r = run(["vitnas", "check-config", "--config", json.dumps(base)])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "supernet.batch_size: 128 exceeds the 100 images of the training split; lower it" in r.stderr
    per_space = base | {"supernet": {"batch_size": 50}, "retrain": {"batch_size": 50},
                        "spaces": {"vit": {"family": "vit", "retrain": {"batch_size": 101}}}}
    r = run(["vitnas", "check-config", "--config", json.dumps(per_space)])
    assert "spaces.vit.retrain.batch_size: 101 exceeds the 100 images" in r.stderr
    # The supernet stage itself stops before it writes anything (identity_prob.json included).
    cfg = config.validate(base)
    data.prepare(cfg, tmp_path / "data")
    out = tmp_path / "sn"
    r = run(["vitnas", "train-supernet", "--config", json.dumps(base), "--data", str(tmp_path / "data"),
             "--weights", str(out / "w.safetensors"), "--train-log", str(out / "log.csv"),
             "--health", str(out / "health.json"), "--checkpoints", str(out / "ckpt")])
    assert r.returncode == 1 and "batch_size 128 exceeds the 100 training images" in r.stderr
    assert not out.exists()


def test_check_config_checks_the_data_root(tmp_path):
    r = run(["vitnas", "check-config", "--config", json.dumps({"data": {"root": str(tmp_path / "nowhere")}})])
    assert r.returncode == 1 and "Traceback" not in r.stderr and "config OK" not in r.stdout
    assert "Fashion-MNIST file" in r.stderr and "data.root" in r.stderr
