"""The training loop: resume equivalence, non-finite loss, signals."""
import os
import signal

import numpy as np
import pytest
import torch

from vitnas import config
from vitnas.arch import Arch
from vitnas.batches import TrainBatches
from vitnas.data import STATS, Split
from vitnas.distributed import Context
from vitnas.engine import train, write_log
from vitnas.errors import CheckpointError, TrainingError
from vitnas.families.vit.model import ViT

CPU = Context()  # one process on the CPU


def setup(workers=0, **train_over):
    cfg = config.validate({"retrain": {"batch_size": 16, "max_steps": 12, "checkpoint_every": 5,
                                       "warmup_steps": 2, "log_every": 3, "drop_path": 0.1,
                                       **train_over}})["retrain"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (80, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 80)
    batches = TrainBatches(Split(images, labels, *STATS["fashion_mnist"]), 16, cfg["augment"] | {"cutmix": 1.0}, 28, 10, seed=5,
                           workers=workers)
    torch.manual_seed(0)
    model = ViT(Arch.uniform(7, 16, 2, 2, 16, 32, family="vit"), 28, 1, 10, drop_path=0.1)
    return model, batches, cfg


def forward(model, x, step):
    return model(x)


@pytest.mark.parametrize("ema,workers", [(None, 0), (0.9, 0), (None, 2)])
def test_killed_run_resumes_bit_identical(tmp_path, ema, workers):
    model, batches, cfg = setup(workers, ema_decay=ema)
    straight = train(model, forward, batches, cfg, tmp_path / "a", "a", CPU)
    write_log(straight, tmp_path / "a.csv")
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    def dies_at(step_to_die):
        def f(model, x, step):
            if step == step_to_die:
                raise KeyboardInterrupt  # stands for SIGKILL: no chance to checkpoint
            return model(x)
        return f

    model, batches, cfg = setup(workers, ema_decay=ema)
    with pytest.raises(KeyboardInterrupt):
        train(model, dies_at(8), batches, cfg, tmp_path / "b", "b", CPU)  # last checkpoint: step 5
    model, batches, cfg = setup(workers, ema_decay=ema)  # a new process: fresh model, state from the checkpoint
    log = train(model, forward, batches, cfg, tmp_path / "b", "b", CPU)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    assert [row["step"] for row in log] == [3, 6, 9, 12]
    # The row of step 6 averages steps 4-6 although the run was resumed at step 5: the losses of
    # the open row travel in the checkpoint. The CSV is byte-identical (no wall-clock column).
    write_log(log, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert [row["loss"] for row in log] == [row["loss"] for row in straight]


def test_ema_is_what_training_ends_with(tmp_path):
    """With ema_decay the trained model is timm's EMA of the weights, not the last weights."""
    model, batches, cfg = setup()
    train(model, forward, batches, cfg, tmp_path / "plain", "p", CPU)
    last = model.state_dict()
    model, batches, cfg = setup(ema_decay=0.9)
    train(model, forward, batches, cfg, tmp_path / "ema", "e", CPU)
    ema = torch.load(tmp_path / "ema" / "last.pt", weights_only=False)["ema"]
    assert all(torch.equal(v, ema[f"module.{k}"]) for k, v in model.state_dict().items())
    assert not torch.equal(model.head.weight, last["head.weight"])


def test_signal_checkpoints_and_stops(tmp_path):
    model, batches, cfg = setup()

    def sends_sigterm(model, x, step):
        if step == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return model(x)

    with pytest.raises(TrainingError, match="SIGTERM received; checkpointed at step 8"):
        train(model, sends_sigterm, batches, cfg, tmp_path, "t", CPU)
    assert torch.load(tmp_path / "last.pt", weights_only=False)["step"] == 8


def test_sigterm_to_the_whole_job_checkpoints_although_the_workers_die(tmp_path):
    """SLURM's SIGTERM reaches the workers too: the training process checkpoints the steps done."""
    model, batches, cfg = setup(workers=2)

    def whole_job_gets_sigterm(model, x, step):
        if step == 7:
            for child in __import__("multiprocessing").active_children():
                os.kill(child.pid, signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return model(x)

    with pytest.raises(TrainingError, match="SIGTERM received; checkpointed at step 8"):
        train(model, whole_job_gets_sigterm, batches, cfg, tmp_path, "t", CPU)
    assert torch.load(tmp_path / "last.pt", weights_only=False)["step"] == 8


def test_non_finite_loss_names_the_step(tmp_path):
    model, batches, cfg = setup()

    def goes_nan(model, x, step):
        out = model(x)
        return out * float("nan") if step == 4 else out

    with pytest.raises(TrainingError, match="loss is nan at step 4"):
        train(model, goes_nan, batches, cfg, tmp_path, "n", CPU)


def test_batches_are_a_function_of_seed_and_step():
    _, batches, _ = setup()
    x1, y1 = batches.get(3)
    batches.get(0)
    x2, y2 = batches.get(3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, batches.get(4)[0])


def test_randaugment_posterize_at_full_magnitude_gives_black():
    """RandAugment's increasing posterize keeps 0 bits at magnitude 10 (m9 + mstd 0.5 gets there);
    Pillow 13 raises a ValueError there, which stopped a DeiT-recipe training run. With vitnas's
    batches imported it gives a black image, as older Pillow did; 1 bit keeps the top bit."""
    from PIL import Image
    from timm.data.auto_augment import AugmentOp

    img = Image.fromarray(np.full((28, 28), 200, np.uint8))
    assert np.asarray(AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)(img)).max() == 0
    assert np.asarray(AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=9)(img)).max() == 128
    rgb = img.convert("RGB")
    assert np.asarray(AugmentOp("Posterize", prob=1.0, magnitude=0)(rgb)).shape == (28, 28, 3)


def test_batched_crop_boxes_follow_timm_random_resized_crop():
    from vitnas.batches import random_resized_crop_boxes

    boxes = random_resized_crop_boxes(np.random.default_rng(0), 5000, 28, 28, (0.5, 1.0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 28).all() and (boxes[:, 3] <= 28).all()
    full = (w == 28) & (h == 28)  # timm's fallback after 10 misses: the whole (square) image
    frac, aspect = (w * h / 784)[~full], (w / h)[~full]
    assert frac.min() >= 0.5 - 0.06 and aspect.min() >= 0.75 - 0.1 and aspect.max() <= 4 / 3 + 0.1
    whole = random_resized_crop_boxes(np.random.default_rng(0), 50, 28, 28, (1.0, 1.0))
    assert (whole == [0, 0, 28, 28]).all()  # area 1 with any aspect but 1 never fits: the fallback


def test_batched_crop_of_the_whole_image_is_the_image_and_ranks_share_the_draws():
    """The batch path (crop + flip on in-memory images): a [1, 1] crop is the normalised image,
    flipped where drawn; each rank's share equals its slice of the one-process batch."""
    from vitnas.batches import roi_align

    images = np.random.default_rng(1).integers(0, 255, (64, 28, 28), dtype=np.uint8)
    split = Split(images, np.arange(64) % 10, *STATS["fashion_mnist"])
    aug = config.validate({})["retrain"]["augment"] | {"randaugment": None, "color_jitter": 0.0,
                                                       "random_erasing": 0.0, "scale": [1.0, 1.0]}
    batches = TrainBatches(split, 16, aug, 28, 10, seed=3)
    assert batches.batched
    x, y = batches.get(2)
    raw = (torch.from_numpy(images).float() / 255 - STATS["fashion_mnist"][0][0]) / STATS["fashion_mnist"][1][0]
    order = np.random.default_rng([3, 0]).permutation(64)[32:48]
    for i, j in enumerate(order):  # each image is itself or its mirror image
        assert torch.allclose(x[i, 0], raw[j]) or torch.allclose(x[i, 0], raw[j].flip(-1))
    full = roi_align(torch.from_numpy(images[:4, None]).float(), torch.tensor(
        [[i, 0.0, 0.0, 28.0, 28.0] for i in range(4)]), (28, 28), 1.0, 1, True)
    assert torch.allclose(full, torch.from_numpy(images[:4, None]).float())
    cropped = dict(aug, scale=[0.5, 1.0])
    one = TrainBatches(split, 16, cropped, 28, 10, seed=3).get(5)[0]
    for rank in (0, 1):
        share = TrainBatches(split, 16, cropped, 28, 10, seed=3, rank=rank, world=2).get(5)[0]
        assert torch.equal(share, one[rank::2])


def test_worker_processes_train_the_same_weights_as_the_training_process(tmp_path):
    """Workers make the batches (CutMix, per-step seeds) and the training process seeds dropout and
    drop-path itself: 2 workers end with the weights of none."""
    weights = []
    for workers in (0, 2):
        model, batches, cfg = setup(workers)
        train(model, forward, batches, cfg, tmp_path / str(workers), "w", CPU)
        weights.append(model.state_dict())
    for k, v in weights[0].items():
        assert torch.equal(v, weights[1][k]), k


class _Planted:
    """A pickle that runs code when loaded: what a checkpoint folder must never execute."""
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("content", ["pickle", "garbage"])
def test_unsafe_or_corrupt_checkpoint_is_refused(tmp_path, content):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    marker = tmp_path / "code-ran"
    if content == "pickle":
        _Planted.marker = marker
        torch.save({"model": _Planted(), "step": 3}, ckpt / "last.pt")
    else:
        (ckpt / "last.pt").write_bytes(b"not a checkpoint")
    model, batches, cfg = setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        train(model, forward, batches, cfg, ckpt, "planted", CPU)
    message = str(err.value)
    assert "\n" not in message and str(ckpt / "last.pt") in message and "delete it" in message
    assert not marker.exists()  # the planted code never ran
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing trained
    assert (ckpt / "last.pt").exists()  # and the file is left for the user to inspect
