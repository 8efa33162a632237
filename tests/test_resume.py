"""Resume equivalence of whole stages: SIGKILL mid-training, run again, same weights and the same
train_log.csv bit for bit (retraining from scratch, and fine-tuning from inherited weights)."""
import json
import random
import signal
import subprocess
import time

import pytest
from safetensors.torch import load_file

from conftest import BIN, run
from vitnas import config, data
from vitnas.export import export_model
from vitnas.families import build_space
from vitnas.model_file import save_model
from vitnas.supernet.train import build_supernet

TRAIN = {"max_steps": 60, "batch_size": 16, "warmup_steps": 2, "checkpoint_every": 7, "log_every": 5}
CFG = {"data": {"search_per_class": 5, "train_limit": 200, "test_limit": 50, "workers": 2},  # batches from workers
       "supernet": TRAIN | {"threads": 1, "eval_images": 20, "health_random": 1},
       "retrain": TRAIN | {"drop_path": 0.1, "finetune": {"max_steps": 60, "lr": 1e-4, "warmup_steps": 2}}}


@pytest.fixture(scope="module")
def prepared(fake_fmnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    cfg = CFG | {"data": CFG["data"] | {"root": str(fake_fmnist)}}
    data.prepare(config.validate(cfg), root / "data")
    (root / "arch.json").write_text(json.dumps(
        {"patch": 7, "embed": 32, "layers": [{"heads": 2, "qkv": 32, "mlp": 64}] * 3}))
    # The fine-tune's start: the network's inherited weights, written by the export stage's writer.
    full = config.validate(cfg)
    net = build_supernet(full)
    arch = net.space.sample(random.Random(0))  # a network of the supernet's space
    (root / "inherited_arch.json").write_text(arch.to_json())
    save_model(export_model(net, arch), arch, root / "inherited.safetensors")
    return root, json.dumps(cfg)


def stage_cmd(stage, root, cfg, out, arch="arch.json"):
    common = ["--config", cfg, "--data", str(root / "data"), "--checkpoints", str(out / "ckpt"),
              "--weights", str(out / "w.safetensors"), "--train-log", str(out / "log.csv")]
    if stage == "train-supernet":
        return [str(BIN / "vitnas"), stage, *common, "--health", str(out / "health.json")]
    init, arch = [], root / arch
    if stage == "retrain-finetune":
        init, arch = ["--init", str(root / "inherited.safetensors")], root / "inherited_arch.json"
    return [str(BIN / "vitnas"), "retrain", *common, "--model", "evo-2M", "--arch", str(arch),
            "--onnx", str(out / "model.onnx"), "--metrics", str(out / "metrics.json"), *init]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train-supernet", "retrain", "retrain-finetune"])
def test_sigkill_then_rerun_gives_identical_weights(prepared, tmp_path, stage):
    root, cfg = prepared
    kill_rerun_and_compare(stage, root, cfg, tmp_path)


@pytest.mark.slow
def test_retraining_with_a_patch_head_resumes_bit_identically(prepared, tmp_path):
    """retrain.patch_mixup (ViT-ResNAS): the patch head, its mixup stream and the head dropped on save."""
    root, cfg = prepared
    resnas = json.loads(cfg) | {"spaces": {"resnas": {"family": "resnas"}}}
    resnas["retrain"] = resnas["retrain"] | {"patch_mixup": True}
    (root / "resnas_arch.json").write_text(build_space(config.for_space(config.validate(resnas), "resnas"))
                                           .smallest().to_json())
    kill_rerun_and_compare("retrain", root, json.dumps(resnas), tmp_path, arch="resnas_arch.json")
    assert not [k for k in load_file(tmp_path / "a/w.safetensors") if k.startswith("patch_head")]


def kill_rerun_and_compare(stage, root, cfg, tmp_path, arch="arch.json"):
    """Run `stage` straight; run it again, SIGKILL it past its first checkpoint and rerun it: the
    same weights and the same training log."""
    straight = run(stage_cmd(stage, root, cfg, tmp_path / "a", arch))
    assert straight.returncode == 0, straight.stderr

    cmd = stage_cmd(stage, root, cfg, tmp_path / "b", arch)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((tmp_path / "b/ckpt").rglob("last.pt")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere past the first checkpoint, before the end
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "b/w.safetensors").exists()  # no half-written output

    resumed = run(cmd)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step" in resumed.stderr
    step = int(resumed.stderr.split("resumed from step ")[1].split()[0])
    assert 0 < step < TRAIN["max_steps"]
    a, b = load_file(tmp_path / "a/w.safetensors"), load_file(tmp_path / "b/w.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), k
    # The training log too, byte for byte (checkpoints every 7 steps, log rows every 5).
    assert (tmp_path / "a/log.csv").read_bytes() == (tmp_path / "b/log.csv").read_bytes()
    if stage.startswith("retrain"):  # what training cost, for the claims: steps x the recipe's batch
        metrics = json.loads((tmp_path / "a/metrics.json").read_text())
        assert (metrics["train_steps"], metrics["train_images"]) == (60, 60 * 16) and metrics["train_seconds"] > 0
    if stage == "retrain-finetune":  # the fine-tune's recipe, from the inherited weights, keyed apart
        assert json.loads((tmp_path / "a/metrics.json").read_text())["init"] == "inherited"
        assert [p.parent.name for p in (tmp_path / "a/ckpt").rglob("last.pt")][0].startswith("init-")
