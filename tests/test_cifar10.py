"""CIFAR-10 from torchvision's pickled batches and from a JPEG tree: the same splits, statistics and
shapes either way; the wrong folder, a damaged or planted batch, and missing data each say the fix."""
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CIFAR_SKIP, DATA_ENV, REPO, cifar10_archive, run
from vitnas import cifar, config, data
from vitnas.batches import TrainBatches
from vitnas.detection.compose import compose_split
from vitnas.loader import EvalImages
from vitnas.spaces import data_info

CLASSES = list(cifar.CLASSES)
PER_BATCH, TEST = 20, 30  # images per training batch (5 batches: 10 per class), test images


def tiny_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` random images [n, 32, 32, 3] and labels cycling through the 10 classes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10


def write_batches(root, protocol: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """torchvision's layout: root/cifar-10-batches-py/ with CIFAR-10's dict batches (rows of the red,
    green and blue planes). Returns the images and labels written, per source."""
    folder = root / cifar.PICKLE_FOLDER
    folder.mkdir(parents=True)
    written = {"train": [], "test": []}
    for k, name in enumerate(cifar.TRAIN_BATCHES + ("test_batch",)):
        images, labels = tiny_images(TEST if name == "test_batch" else PER_BATCH, seed=k)
        batch = {"batch_label": name, "labels": labels.tolist(),
                 "data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                 "filenames": [f"{name}_{i}.png" for i in range(len(images))]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written["test" if name == "test_batch" else "train"].append((images, labels))
    meta = {"label_names": CLASSES, "num_cases_per_batch": PER_BATCH, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return {s: tuple(np.concatenate(parts) for parts in zip(*w)) for s, w in written.items()}


def write_tree(root, per_class: dict[str, int]) -> dict[tuple[str, str], np.ndarray]:
    """root/train/<class>/NNNN.jpg and root/test/<class>/NNNN.jpg, each one flat colour (JPEG keeps it
    to within a grey level or two). Returns the colour per (split folder, id)."""
    colours = {}
    for folder, n in per_class.items():
        for c, name in enumerate(CLASSES):
            (root / folder / name).mkdir(parents=True)
            for i in range(n):
                colour = np.array([20 * c + i, 250 - 20 * c, 100 + 3 * i], dtype=np.uint8)
                Image.fromarray(np.broadcast_to(colour, (32, 32, 3)).copy()).save(
                    root / folder / name / f"{i:04d}.jpg", quality=95)
                colours[folder, f"{name}/{i:04d}.jpg"] = colour
    return colours


def prepare(root, out, **over):
    cfg = config.validate({"data": {"dataset": "cifar10", "root": str(root), **over}, "seed": 5})
    return cfg, data.prepare(cfg, out)


def test_torchvision_batches_give_the_images_in_rgb_order(tmp_path):
    raw = write_batches(tmp_path / "dl")
    cfg, manifest = prepare(tmp_path / "dl", tmp_path / "data", search_per_class=3)
    assert manifest.split.value_counts().to_dict() == {"train": 70, "search": 30, "test": 30}
    assert data.split_sizes(cfg) == {"train": 70, "search": 30, "test": 30}  # from the batches alone
    for split in data.SPLITS:
        rows = manifest[manifest.split == split]
        source = "test" if split == "test" else "train"
        loaded = data.load_split(tmp_path / "data", split, "cifar10")
        np.testing.assert_array_equal(loaded.images, raw[source][0][rows["index"]])
        np.testing.assert_array_equal(loaded.labels, raw[source][1][rows["index"]])
        assert loaded.images.shape[1:] == (32, 32, 3) and loaded.in_memory and loaded.channels == 3
    search = data.load_split(tmp_path / "data", "search", "cifar10")
    assert np.bincount(search.labels).tolist() == [3] * 10   # held out of train, class-balanced
    assert (search.mean, search.std) == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    assert set(manifest[manifest.split == "search"]["index"]).isdisjoint(manifest[manifest.split == "train"]["index"])
    held_out = (tmp_path / "data" / "held_out.txt").read_text().split()
    assert held_out == [str(i) for i in manifest[manifest.split == "search"]["index"]]  # indices into the batches
    # data.root may also be the batches' folder itself
    again = prepare(tmp_path / "dl" / cifar.PICKLE_FOLDER, tmp_path / "data2", search_per_class=3)[1]
    assert again.equals(manifest)


def test_batches_pickled_with_numpy_1_names_load(tmp_path):
    """The released batches name numpy 1's module (numpy.core.multiarray), as pickled in 2009."""
    raw = write_batches(tmp_path)
    path = tmp_path / cifar.PICKLE_FOLDER / "data_batch_1"
    old = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\n_reconstruct" in old
    path.write_bytes(old)
    images, labels, ids = cifar.read_pickles(path.parent)["train"]
    np.testing.assert_array_equal(images, raw["train"][0])
    assert labels.tolist() == raw["train"][1].tolist() and ids[:3].tolist() == ["0", "1", "2"]


def test_a_planted_batch_is_refused_without_running(tmp_path):
    write_batches(tmp_path)

    class Planted:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    (tmp_path / cifar.PICKLE_FOLDER / "test_batch").write_bytes(pickle.dumps({"data": Planted()}))
    with pytest.raises(data.DataError) as e:
        cifar.read_pickles(tmp_path / cifar.PICKLE_FOLDER)
    assert not (tmp_path / "ran").exists()
    assert "test_batch is not a CIFAR-10 batch (it refers to posix.system, not only to arrays)" in str(e.value)
    assert "CIFAR10(root, download=True)" in str(e.value)


def test_a_missing_batch_is_named(tmp_path):
    write_batches(tmp_path)
    (tmp_path / cifar.PICKLE_FOLDER / "data_batch_3").unlink()
    with pytest.raises(data.DataError, match="cifar-10-batches-py lacks data_batch_3; download CIFAR-10 again"):
        data.check_source({"data": {"dataset": "cifar10", "root": str(tmp_path)}})


def test_jpeg_tree_is_decoded_once_into_arrays(tmp_path):
    colours = write_tree(tmp_path / "cifar10", {"train": 6, "test": 2})
    (tmp_path / "cifar10" / "train" / "cat" / "0005.jpg").write_bytes(b"not a jpeg")  # left out, named
    cfg, manifest = prepare(tmp_path / "cifar10", tmp_path / "data", search_per_class=2, max_corrupt_fraction=0.05)
    assert data.split_sizes(cfg) == {"train": 40, "search": 20, "test": 20}  # counted: the bad file too
    assert manifest.split.value_counts().to_dict() == {"train": 39, "search": 20, "test": 20}
    assert "cat/0005.jpg" not in set(manifest["id"])
    for split in data.SPLITS:
        rows = manifest[manifest.split == split]
        loaded = data.load_split(tmp_path / "data", split, "cifar10")
        assert loaded.images.dtype == np.uint8 and loaded.images.shape[1:] == (32, 32, 3)
        assert [CLASSES.index(i.split("/")[0]) for i in rows["id"]] == loaded.labels.tolist()  # sorted names
        folder = "test" if split == "test" else "train"
        expected = np.stack([colours[folder, i] for i in rows["id"]]).astype(int)
        assert np.abs(loaded.images.astype(int).mean(axis=(1, 2)) - expected).max() <= 3  # JPEG's rounding
    held_out = (tmp_path / "data" / "held_out.txt").read_text().split()
    assert held_out == manifest[manifest.split == "search"]["id"].tolist() and held_out[0].endswith(".jpg")
    # another run given that list holds out the same images
    same = prepare(tmp_path / "cifar10", tmp_path / "data2", max_corrupt_fraction=0.05,
                   held_out_list=str(tmp_path / "data" / "held_out.txt"))[1]
    assert same[same.split == "search"]["id"].tolist() == held_out


def test_too_many_corrupt_files_stop_the_data_stage(tmp_path):
    write_tree(tmp_path / "cifar10", {"train": 2, "test": 1})
    for name in CLASSES[:3]:
        (tmp_path / "cifar10" / "test" / name / "0000.jpg").write_bytes(b"")
    with pytest.raises(data.DataError, match="3 of the 10 images of the test split are corrupt"):
        prepare(tmp_path / "cifar10", tmp_path / "data", search_per_class=1)


def test_a_folder_without_cifar10_says_both_ways_to_get_it(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)  # no test/: neither layout
    cfg = f'{{"data": {{"dataset": "cifar10", "root": "{tmp_path}"}}}}'
    r = run(["vitnas", "prepare-data", "--config", cfg, "--out", str(tmp_path / "out")])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"vitnas prepare-data: error: data: no CIFAR-10 in {tmp_path}; set data.root to a folder holding cifar-10-batches-py/ "
        "(torchvision's CIFAR10(root, download=True) writes it) or train/<class>/*.jpg and test/<class>/*.jpg "
        "(the cifar10/ folder of cifar10-jpeg.tar.gz)")
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_a_class_subset_is_refused_for_cifar10(tmp_path):
    write_batches(tmp_path)
    with pytest.raises(data.DataError, match=r"^data.classes: a class subset is for ImageNet folders; remove it"):
        data.check_source({"data": {"dataset": "cifar10", "root": str(tmp_path), "classes": ["cat"]}})


def test_prepared_arrays_train_batched_and_evaluate_as_rgb(tmp_path):
    """In memory at their own size: the batched crop-and-flip path, normalised by CIFAR's statistics."""
    write_batches(tmp_path)
    cfg, _ = prepare(tmp_path, tmp_path / "data", search_per_class=3)
    train = data.load_split(tmp_path / "data", "train", "cifar10")
    aug = cfg["supernet"]["augment"] | {"scale": [1.0, 1.0], "hflip": 0.0, "cutmix": 0.0, "mixup": 0.0,
                                        "random_erasing": 0.0, "color_jitter": 0.0, "randaugment": None}
    batches = TrainBatches(train, 8, aug, 32, 10, seed=0)
    assert batches.batched
    x, y = batches.get(0)
    first = batches._permutation(0)[:8]
    mean, std = torch.tensor(train.mean).view(1, 3, 1, 1), torch.tensor(train.std).view(1, 3, 1, 1)
    expected = (torch.from_numpy(train.images[first]).permute(0, 3, 1, 2) / 255 - mean) / std
    torch.testing.assert_close(x, expected)
    assert y.tolist() == train.labels[first].tolist()
    search = EvalImages.decode(data.load_split(tmp_path / "data", "search", "cifar10"), 32)
    assert search.images.shape == (30, 3, 32, 32) and search.mean == (0.4914, 0.4822, 0.4465)


def test_the_detection_set_composes_rgb_images_named_by_class():
    images, labels = tiny_images(20, seed=9)
    images[:, :4] = 0  # a dark top margin: left out of the box, as Fashion-MNIST's
    canvases, coco = compose_split(images, labels, 6, 64, (2, 3), (16, 32), seed=1, names=data.CLASS_NAMES["cifar10"])
    assert canvases.shape == (6, 64, 64, 3) and canvases.dtype == np.uint8
    assert [c["name"] for c in coco["categories"]] == CLASSES
    assert coco["info"]["description"] == "10-class images composed on canvases"
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        box = canvases[ann["image_id"] - 1, y:y + h, x:x + w]
        assert box.max(axis=2)[0].max() > 16 and box.max(axis=2)[:, 0].max() > 16  # tight: lit edges
        assert h < w  # the dark margin was cropped off


def test_spaces_see_rgb_32px_and_10_classes():
    assert data_info({"dataset": "cifar10"}) == {"in_chans": 3, "num_classes": 10, "img_size": 32}


def test_without_the_data_the_real_archive_tests_skip_saying_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        cifar10_archive()
    assert str(skipped.value) == CIFAR_SKIP
    assert f"{DATA_ENV}=/path/to/folder with cifar10-jpeg.tar.gz" in CIFAR_SKIP
    assert "CIFAR10(root, download=True)" in CIFAR_SKIP
    monkeypatch.setenv(DATA_ENV, str(tmp_path))  # a folder without the archive skips too
    with pytest.raises(pytest.skip.Exception):
        cifar10_archive()


def test_the_real_jpeg_archive(cifar10_jpeg, tmp_path):
    """The shared copy (a subset: 20 training, 10 test images per class): CIFAR-10's classes in
    torchvision's label order, 32 x 32 RGB, pixel statistics near CIFAR-10's."""
    assert sorted(d.name for d in (cifar10_jpeg / "train").iterdir()) == CLASSES
    cfg, manifest = prepare(cifar10_jpeg, tmp_path / "data", search_per_class=5)
    assert manifest.split.value_counts().to_dict() == {"train": 150, "search": 50, "test": 100}
    train = data.load_split(tmp_path / "data", "train", "cifar10")
    assert train.images.shape == (150, 32, 32, 3)
    pixels = train.images.reshape(-1, 3) / 255
    np.testing.assert_allclose(pixels.mean(0), train.mean, atol=0.05)
    np.testing.assert_allclose(pixels.std(0), train.std, atol=0.05)


def test_cifar10_config_is_valid_without_the_data():
    r = run(["vitnas", "check-config", "--config", "config/config.yaml", "config/cifar10.yaml", "--skip-data"],
            timeout=120)
    assert r.returncode == 0, r.stderr
    assert [line.split(" (")[0] for line in r.stdout.splitlines()] == [
        "config OK: experiment cifar10, space vit", "config OK: experiment cifar10, space resnas",
        "config OK: experiment cifar10, space twins"]
    assert (REPO / "config" / "cifar10.yaml").read_text().count("dataset: cifar10") == 1
