"""retrain.patch_mixup: ViT-ResNAS's retraining with a patch head on patch-level mixup (every released
retraining script sets --use-patch-mixup), saved without the head, and refused where a family has none."""
import pytest
import torch
from safetensors.torch import load_file

from vitnas.model_file import load_model
from vitnas import checks, config, data, retrain
from vitnas.errors import ConfigError
from vitnas.families import build_space
from vitnas.patch_mixup import PatchMixupLoss

RESNAS = {"spaces": {"resnas": {"family": "resnas"}},
          "data": {"search_per_class": 5, "train_limit": 120, "test_limit": 40, "workers": 0},
          "retrain": {"max_steps": 6, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 100, "log_every": 3,
                      "drop_path": 0.0, "throughput_batch": 2, "eval_batch_size": 40, "patch_mixup": True}}


@pytest.fixture(scope="module")
def prepared(fake_fmnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("patch_mixup")
    cfg = config.for_space(config.validate(RESNAS | {"data": RESNAS["data"] | {"root": str(fake_fmnist)}}), "resnas")
    data.prepare(cfg, root / "data")
    (root / "arch.json").write_text(build_space(cfg).smallest().to_json())
    return root, cfg


def test_retraining_trains_the_patch_head_and_saves_the_model_without_it(prepared, tmp_path, monkeypatch):
    root, cfg = prepared
    seen = {}
    real_train = retrain.train

    def watched(model, forward, batches, rt, *args, **kw):  # the stage's own training, observed
        seen["head"] = model.patch_head.weight.detach().clone()
        seen["criterion"], seen["grid"] = batches.criterion, batches.patch_mixup.grid
        x, (targets, patches) = batches.get(0)
        seen["targets"] = patches.shape
        log = real_train(model, forward, batches, rt, *args, **kw)
        seen["trained_head"] = model.patch_head.weight.detach().clone()
        seen["x"] = x
        with torch.no_grad():  # the trained model, head still on, in eval mode: logits only
            seen["logits"] = model.eval()(x)
        seen["model"] = model
        return log

    monkeypatch.setattr(retrain, "train", watched)
    monkeypatch.setattr(retrain, "measure_model", lambda *a: {})  # ONNX and latency: tests/test_onnx_latency.py
    out = tmp_path
    metrics = retrain.run(cfg, "evo-4M", root / "arch.json", root / "data", out / "w.safetensors", out / "m.json",
                          out / "log.csv", out / "ckpt", threads=1, onnx_out=out / "model.onnx")
    # Trained on patch targets: one per image and last-stage token (2 x 2 at 28 px: 7, 4, 2).
    assert isinstance(seen["criterion"], PatchMixupLoss) and seen["grid"] == 2
    assert seen["targets"] == (16, 4, 10)
    assert not torch.equal(seen["head"], seen["trained_head"])  # the head's weights moved
    saved = load_file(out / "w.safetensors")
    assert not [k for k in saved if k.startswith("patch_head")]
    model = seen["model"]
    assert model.patch_head is None and saved.keys() == model.state_dict().keys()
    space = build_space(cfg)  # counted without the head: the stand-alone model's parameters
    assert metrics["params"] == space.params(space.smallest()) == sum(p.numel() for p in model.parameters())
    loaded = load_model(out / "w.safetensors", build_space(cfg)).eval()
    with torch.no_grad():  # the same weights through the same operations: equal bit for bit
        assert torch.equal(loaded(seen["x"]), seen["logits"])


def test_the_switch_off_trains_as_before(prepared, tmp_path, monkeypatch):
    root, cfg = prepared
    off = cfg | {"retrain": cfg["retrain"] | {"patch_mixup": False}}
    seen = {}

    def watched(model, forward, batches, rt, *args, **kw):
        seen["head"], seen["mix"] = model.patch_head, batches.patch_mixup
        return []

    monkeypatch.setattr(retrain, "train", watched)
    monkeypatch.setattr(retrain, "split_accuracy", lambda *a: (0.0, 0))
    monkeypatch.setattr(retrain, "measure_model", lambda *a: {})
    retrain.run(off, "evo-4M", root / "arch.json", root / "data", tmp_path / "w.safetensors", tmp_path / "m.json",
                tmp_path / "log.csv", tmp_path / "ckpt", threads=1, onnx_out=tmp_path / "model.onnx")
    assert seen == {"head": None, "mix": None}


@pytest.mark.parametrize("family", ["vit", "twins", "macro"])
def test_a_family_without_a_patch_head_refuses_the_switch_in_one_line(family):
    own = config.validate({"spaces": {"s": {"family": family, "retrain": {"patch_mixup": True}}}})
    with pytest.raises(ConfigError) as e:
        checks.check_switches(own, config.for_space(own, "s"))
    assert str(e.value) == (f"config: spaces.s.retrain.patch_mixup = true reaches space s, but the {family} family "
                            "has no patch head (families with one: resnas); remove it")
    inherited = config.validate({"spaces": {"s": {"family": family}}, "retrain": {"patch_mixup": True}})
    with pytest.raises(ConfigError, match=r"^config: retrain\.patch_mixup = true reaches space s, .*; set it under "
                                          r"spaces\.<name>\.retrain of the spaces that have one$"):
        checks.check_switches(inherited, config.for_space(inherited, "s"))
    checks.check_switches(*(lambda c: (c, config.for_space(c, "r")))(  # resnas reads it
        config.validate({"spaces": {"r": {"family": "resnas"}}, "retrain": {"patch_mixup": True}})))


def test_the_reference_networks_train_with_the_retrain_recipe_patch_head_included(prepared, tmp_path, monkeypatch):
    from vitnas import engine, reference

    root, cfg = prepared
    cfg = cfg | {"reference": cfg["reference"] | {"archs_per_budget": 1, "seeds": 1, "steps": 2, "eval_images": 10}}
    seen = []
    real_train = engine.train

    def watched(model, forward, batches, rt, *args, **kw):
        seen.append((model.patch_grid, isinstance(batches.criterion, PatchMixupLoss)))
        return real_train(model, forward, batches, rt, *args, **kw)

    monkeypatch.setattr(engine, "train", watched)
    rows = reference.run(cfg, root / "data", tmp_path / "standalone.csv", tmp_path / "ckpt")
    assert seen == [(2, True)] * len(rows) and len(rows) == len(cfg["search"]["budgets"])
