"""Issue 19 §2 and §3 (measurement): every family's stand-alone model exports to ONNX with a dynamic
batch axis and onnxruntime reproduces torch's logits; an op without a converter stops in one line
naming it; the latency record carries the device, threads, batch sizes and library versions."""
import random
import re

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from vitnas import config, families
from vitnas.compare import families_table
from vitnas.families import build_model, build_space
from vitnas.latency import measure, row, summarise
from vitnas.onnx_export import (EPS32, OnnxExportError, export_onnx, read_metadata, tolerance,
                                unsupported_op)
from vitnas.retrain import measure_model
from vitnas.space_tables import models_table

FAMILIES = families.names()


def test_every_family_is_covered():
    assert set(FAMILIES) == {"vit", "resnas", "twins", "macro"}


def small_model(name: str):
    """A sampled (not the largest) network of the family's default 28 px space, seeded weights."""
    space = build_space(config.validate({"space": {"family": name}}))
    arch = space.sample(random.Random(0), 0.4)
    torch.manual_seed(0)
    return space, arch, build_model(arch, space).eval()


def ort_logits(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


def check_export(name: str, tmp_path, exporter: str) -> dict:
    space, arch, model = small_model(name)
    path = tmp_path / f"{name}.onnx"
    record = export_onnx(model, space.img_size, space.in_chans, path, opset=18, depth=arch.depth,
                         exporter=exporter)
    assert record["opset"] == 18 and record["exporter"] in ("dynamo", "torchscript")
    assert read_metadata(path)["vitnas.exporter"] == record["exporter"]
    assert read_metadata(path)["vitnas.opset"] == "18" and read_metadata(path)["opset_import"]["ai.onnx"] == 18
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left
    # Our own check, at batch sizes the export's check did not use: 1 and 5 (the axis is dynamic).
    for batch in (1, 5):
        x = torch.randn(batch, space.in_chans, space.img_size, space.img_size,
                        generator=torch.Generator().manual_seed(10 + batch))
        with torch.no_grad():
            ref = model(x).numpy()
        got = ort_logits(path, x)
        assert got.shape == ref.shape == (batch, space.num_classes)
        # float32 kernels that sum in another order: see onnx_export.tolerance for the derivation
        np.testing.assert_allclose(got, ref, rtol=0, atol=tolerance(ref, arch.depth))
    assert 0 <= record["max_abs_diff"] <= record["tolerance"]
    return record


# The fast tier's exporter per family: TorchScript's is ~6x quicker, but resnas's spatial reduction
# takes its kernel from the input's shape, which that exporter cannot keep dynamic: dynamo exports it.
FAST_EXPORTER = {"resnas": "dynamo"}


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_matches_torch_every_family(name, tmp_path):
    check_export(name, tmp_path, FAST_EXPORTER.get(name, "torchscript"))


def test_a_failure_other_than_an_op_is_named_by_its_cause(tmp_path):
    space, arch, model = small_model("resnas")
    with pytest.raises(OnnxExportError) as e:
        export_onnx(model, space.img_size, space.in_chans, tmp_path / "m.onnx", exporter="torchscript")
    assert "\n" not in str(e.value) and "has no ONNX converter" not in str(e.value)
    assert "torchscript: SymbolicValueError: Failed to export a node" in str(e.value)


@pytest.mark.slow  # the dynamo exporter takes ~20-40 s per model on this machine
@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_matches_torch_every_family_auto(name, tmp_path):
    record = check_export(name, tmp_path, "auto")
    # dynamo first; the TorchScript exporter only with the reason dynamo failed
    assert (record["exporter"] == "dynamo") == (record["fallback_reason"] is None)


def test_the_check_catches_an_onnx_that_differs(tmp_path, monkeypatch):
    """The export's onnxruntime check fails when the file does not compute the model: here the
    model's weights change between writing the file and checking it."""
    space, arch, model = small_model("vit")
    from vitnas import onnx_export

    real = onnx_export._stamp

    def stamp_then_perturb(path, props):
        real(path, props)
        with torch.no_grad():
            model.head.bias.add_(0.5)  # every logit moves by 0.5, far past the tolerance

    monkeypatch.setattr(onnx_export, "_stamp", stamp_then_perturb)
    with pytest.raises(OnnxExportError, match=r"differ from torch's by .* \(> .*batch 2\)"):
        export_onnx(model, space.img_size, space.in_chans, tmp_path / "m.onnx", exporter="torchscript")
    assert not (tmp_path / "m.onnx").exists()  # no half-checked artefact left behind


def test_tolerance_scales_with_depth_and_logits():
    assert tolerance(np.array([0.5]), 4) == pytest.approx(400 * EPS32)  # logits below 1: scale 1
    assert tolerance(np.array([-20.0, 3.0]), 4) == pytest.approx(20 * 400 * EPS32)
    assert tolerance(np.array([1.0]), 8) == 2 * tolerance(np.array([1.0]), 4)


@torch.library.custom_op("vitnas_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@mystery.register_fake
def _(x):
    return torch.empty_like(x)


class Mystery(torch.nn.Module):
    """A network with an op neither exporter knows (a custom op without an ONNX converter)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(mystery(x).flatten(1))


@pytest.mark.parametrize("exporter, op", [("torchscript", "vitnas_test::mystery"),
                                          pytest.param("auto", "vitnas_test.mystery", marks=pytest.mark.slow)])
def test_an_op_without_converter_stops_in_one_line_naming_it(exporter, op, tmp_path):
    with pytest.raises(OnnxExportError) as e:
        export_onnx(Mystery(), 2, 1, tmp_path / "m.onnx", exporter=exporter)
    message = str(e.value)
    assert "\n" not in message
    assert f"the op {op} has no ONNX converter" in message and "replace that op" in message
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("message, op", [
    ("Exporting the operator 'aten::_fft_r2c' to ONNX opset version 18 is not supported.", "aten::_fft_r2c"),
    ("DispatchError: No ONNX function found for <OpOverload(op='aten.linalg_eig', overload='default')>.",
     "aten.linalg_eig"),
    ("Unsupported FX nodes: {'call_function': ['aten.histc.default']}.", "aten.histc.default"),
    ("ConversionError: Failed to convert the exported program to an ONNX model.", None),
])
def test_unsupported_op_is_read_from_either_exporter(message, op):
    assert unsupported_op(message) == op


# ---------------------------------------------------------------------------------------- latency

def test_summarise_is_median_and_interquartile_range():
    s = summarise([0.001, 0.002, 0.003, 0.004, 0.005])  # seconds; numpy's linear quantiles
    assert s == {"median_ms": pytest.approx(3.0), "iqr_ms": pytest.approx(2.0), "repeats": 5}


def test_latency_record_carries_device_threads_batch_versions(tmp_path):
    space, arch, model = small_model("macro")
    path = tmp_path / "m.onnx"
    export_onnx(model, space.img_size, space.in_chans, path, exporter="torchscript")
    before = torch.get_num_threads()
    record = measure(model, path, space.img_size, space.in_chans, [1, 4], threads=1, warmup=1, repeats=5)
    assert torch.get_num_threads() == before  # the stage's own thread count is restored
    m = record["machine"]
    assert m["device"] == "cpu" and m["device_name"] and m["threads"] == 1
    assert {"python", "torch", "onnxruntime", "timm"} <= set(m)
    assert m["torch"] == torch.__version__ and m["onnxruntime"] == ort.__version__
    assert {(r["runtime"], r["batch"]) for r in record["rows"]} == {
        (rt, b) for rt in ("torch", "onnxruntime") for b in (1, 4)}
    for r in record["rows"]:
        assert r["median_ms"] > 0 and r["iqr_ms"] >= 0 and r["repeats"] == 5
        assert r["images_per_second"] == pytest.approx(r["batch"] / r["median_ms"] * 1e3)
        assert r["provider"] in ("cpu", "CPUExecutionProvider") and r["precision"] == "float32"
    assert row(record, "onnxruntime", 4)["batch"] == 4 and row(record, "torch", 2) is None


def test_retraining_measures_onnx_latency_and_throughput_with_one_code(tmp_path):
    """The metrics' throughput is the latency record's torch row at the throughput batch."""
    space, arch, model = small_model("vit")
    cfg = config.validate({"retrain": {"throughput_batch": 4}, "onnx": {"exporter": "torchscript"},
                           "latency": {"warmup": 1, "repeats": 4}})
    m = measure_model(model, arch, space, cfg, tmp_path / "model.onnx", 1, torch.device("cpu"))
    assert (tmp_path / "model.onnx").is_file() and m["onnx"]["exporter"] == "torchscript"
    assert m["throughput"] == row(m["latency"], "torch", 4)["images_per_second"]
    assert m["latency_torch_ms"] == row(m["latency"], "torch", 1)["median_ms"]
    assert m["latency_ort_ms"] == row(m["latency"], "onnxruntime", 1)["median_ms"]
    assert m["throughput_device"] == "cpu (1 thread, batch 4)"


def test_config_defaults_of_onnx_and_latency():
    cfg = config.validate({})
    assert cfg["onnx"] == {"opset": 18, "exporter": "auto"}
    assert cfg["latency"] == {"warmup": 3, "repeats": 20}
    assert {"onnx", "latency"} <= set(config.stage_config(cfg, "retrain"))


# ---------------------------------------------------------------------------------------- tables

METRICS = pd.DataFrame([
    {"model": "evo-2M", "kind": "evo", "budget": "2M", "top1": 80.0, "params": 1e6, "macs": 1.9e6,
     "throughput": 900.0, "throughput_device": "cpu (1 thread, batch 64)", "latency_torch_ms": 0.8,
     "latency_ort_ms": 0.3},
])


def test_models_and_families_tables_carry_latency_beside_macs():
    table = models_table(METRICS, {"2M": "[1.8M, 2M]"})
    cols = list(table.columns)
    assert cols[cols.index("MACs (M)") + 1: cols.index("MACs (M)") + 3] == ["latency torch (ms)", "latency ORT (ms)"]
    assert table.loc[0, "latency torch (ms)"] == 0.8 and table.loc[0, "latency ORT (ms)"] == 0.3
    fam = families_table(METRICS.assign(space="vit", family="vit", AP=1.0, AP50=2.0))
    cols = list(fam.columns)
    assert cols[cols.index("MACs (M)") + 1: cols.index("MACs (M)") + 3] == ["latency torch (ms)", "latency ORT (ms)"]
    assert re.fullmatch(r"[\d.]+", str(fam.loc[0, "latency ORT (ms)"]))
