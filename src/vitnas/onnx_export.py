"""A model as ONNX, checked by onnxruntime: any stage hands it an `nn.Module` (or a model file:
`export_model_file`) and gets `model.onnx` with a dynamic batch axis and a record of how it was
made and how closely onnxruntime reproduces torch.

The dynamo exporter (`torch.onnx.export(dynamo=True)`) is tried first; when its converter fails
(Twins-SVT's does, at 224 px and at the default's 28 px), the TorchScript exporter (`dynamo=False`) is tried. The exporter and the
opset are written into the file's metadata_props and the record. An op neither exporter converts
stops with one line naming the op (`OnnxExportError`). The file is written atomically.
"""
from __future__ import annotations

import contextlib
import io
import re
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import VitnasError
from .io import atomic_path

DEFAULT_OPSET = 18  # both exporters in torch 2.13 write it; onnxruntime 1.32 runs it
EXPORTERS = {"auto": (("dynamo", True), ("torchscript", False)),  # dynamo, falling back
             "dynamo": (("dynamo", True),), "torchscript": (("torchscript", False),)}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
VERIFY_SEED = 0  # the fixed batch onnxruntime is checked on
VERIFY_BATCHES = (2, 3)  # two sizes: the second proves the batch axis is dynamic
EPS32 = float(np.finfo(np.float32).eps)


class OnnxExportError(VitnasError, RuntimeError):
    """A model that does not export to ONNX (an op without a converter) or whose ONNX disagrees
    with torch; one line naming the op or the difference, and the fix."""


_OP_HINTS = (re.compile(r"operator '([^']+)'"),  # TorchScript: Exporting the operator 'aten::x' ...
             re.compile(r"OpOverload\(op='([^']+)'"),  # dynamo: No ONNX function found for <OpOverload(op=...
             re.compile(r"operator with unrecognized namespace ([\w:]+)"),  # TorchScript, a custom op
             re.compile(r"function registered for (?:call_function )?'?([\w:.]+)"),  # dynamo dispatcher
             re.compile(r"Unsupported FX nodes: \{'call_function': \['([^']+)'"))


def unsupported_op(message: str) -> str | None:
    """The op an exporter's error says it cannot convert, or None when it says no such thing (other
    failures, e.g. a shape the TorchScript exporter cannot make dynamic, name ops that do convert)."""
    for pattern in _OP_HINTS:
        m = pattern.search(message)
        if m:
            return m.group(1)
    return None


def _describe(e: BaseException) -> str:
    """An exporter's failure as text, its causes included (dynamo's ConversionError says only
    which step failed; the op is named in the exception it wraps)."""
    parts = []
    while e is not None and len(parts) < 8:
        parts.append(f"{type(e).__name__}: {_ANSI.sub('', str(e))}")
        e = e.__cause__ or e.__context__
    return "\n".join(parts)


def _innermost(e: BaseException) -> str:
    """The first line of the innermost cause (what actually failed), short."""
    for _ in range(8):  # a bound, as in _describe
        if (e.__cause__ or e.__context__) is None:
            break
        e = e.__cause__ or e.__context__
    lines = [line.strip() for line in _ANSI.sub("", str(e)).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def _export(model, x, path: Path, opset: int, dynamo: bool) -> None:
    """One exporter, quietly (both print progress and warnings the stage log need not hold)."""
    kwargs = {"input_names": ["images"], "output_names": ["logits"], "opset_version": opset}
    if dynamo:
        kwargs |= {"dynamo": True, "dynamic_shapes": {"x": {0: torch.export.Dim("batch", min=1)}},
                   "external_data": False, "optimize": True, "verbose": False}
    else:
        kwargs |= {"dynamo": False, "dynamic_axes": {"images": {0: "batch"}, "logits": {0: "batch"}}}
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), **kwargs)




class _Positional(torch.nn.Module):
    """The model with its input named `x`, so dynamic_shapes can name it whatever forward calls it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def _stamp(path: Path, props: dict[str, str]) -> None:
    """Record how the file was made inside it (metadata_props), keeping its single-file form."""
    import onnx

    m = onnx.load(str(path))
    for key, value in props.items():
        entry = m.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(m, str(path))


def tolerance(reference: np.ndarray, depth: int) -> float:
    """How far onnxruntime's logits may be from torch's. Both compute in float32 with different
    kernels, so each op may round differently by a few eps relative to its output; a block's
    matmuls sum up to ~4·embed terms in another order (about sqrt(K) ≈ 30 eps for K ≈ 1000) and
    LayerNorm/softmax amplify that a few times, so we allow 100 eps per layer, adding up over the
    `depth` layers in sequence, relative to the logits' scale (at least 1)."""
    return 100 * max(depth, 1) * EPS32 * max(1.0, float(np.abs(reference).max()))


def _matmul_depth(model) -> int:
    """An upper bound of the chain of matmuls (linear and conv layers) along the forward path."""
    return sum(isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)) for m in model.modules())


def verify(model, path, img_size: int, in_chans: int, depth: int | None = None) -> tuple[float, float]:
    """max |onnxruntime - torch| over seeded batches of VERIFY_BATCHES sizes (eval mode, float32),
    and the smallest tolerance it was held to; raises OnnxExportError past `tolerance`."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    depth = depth or _matmul_depth(model)
    gen = torch.Generator().manual_seed(VERIFY_SEED)
    worst, tightest = 0.0, float("inf")
    for batch in VERIFY_BATCHES:
        x = torch.randn(batch, in_chans, img_size, img_size, generator=gen)
        with torch.no_grad():
            ref = model(x).float().numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise OnnxExportError(f"{path}: onnxruntime gives logits of shape {got.shape} for a batch of "
                                  f"{batch}, torch {ref.shape}; the batch axis is not dynamic, re-export it")
        diff = float(np.abs(got - ref).max())
        tol = tolerance(ref, depth)
        if not diff <= tol:
            raise OnnxExportError(f"{path}: onnxruntime's logits differ from torch's by {diff:.3g} "
                                  f"(> {tol:.3g}, batch {batch}); export with another opset (onnx.opset)")
        worst, tightest = max(worst, diff), min(tightest, tol)
    return worst, tightest


def export_onnx(model: torch.nn.Module, img_size: int, in_chans: int, path, opset: int = DEFAULT_OPSET,
                depth: int | None = None, exporter: str = "auto") -> dict:
    """Write `model` (moved to the CPU, eval mode, float32) as ONNX at `path`, check it with
    onnxruntime, and return {path, exporter, opset, max_abs_diff, tolerance, export_seconds,
    fallback_reason}. `exporter`: auto (dynamo, then TorchScript if dynamo's converter fails),
    dynamo or torchscript. `depth`: the layers in sequence, for the tolerance (default: the linear
    and conv layers, an upper bound)."""
    path = Path(path)
    was_training, device = model.training, next(model.parameters()).device
    model.eval().cpu().float()
    x = torch.randn(VERIFY_BATCHES[0], in_chans, img_size, img_size, generator=torch.Generator().manual_seed(0))
    wrapped = _Positional(model).eval()
    errors = {}
    t0 = time.perf_counter()
    try:
        with atomic_path(path) as tmp:
            for used, dynamo in EXPORTERS[exporter]:
                try:
                    _export(wrapped, x, tmp, opset, dynamo)
                    break
                except Exception as e:  # a converter failure of either exporter; the other may work
                    errors[used] = e
            else:
                op = unsupported_op("\n".join(_describe(e) for e in errors.values()))
                name = type(model).__name__
                if op:
                    raise OnnxExportError(f"ONNX export of {name} failed ({', '.join(errors)}): the op {op} has "
                                          f"no ONNX converter at opset {opset}; replace that op in the model (or "
                                          "register an ONNX converter for it), or try another onnx.opset")
                causes = "; ".join(f"{k}: {_innermost(e)}" for k, e in errors.items())
                raise OnnxExportError(f"ONNX export of {name} failed at opset {opset} ({causes}); set "
                                      "onnx.exporter: auto (dynamo first), or make that part of the model static")
            seconds = time.perf_counter() - t0
            _stamp(tmp, {"vitnas.exporter": used, "vitnas.opset": str(opset)})
            diff, tol = verify(model, tmp, img_size, in_chans, depth)
    finally:
        model.train(was_training).to(device)
    return {"path": str(path), "exporter": used, "opset": opset, "max_abs_diff": diff, "tolerance": tol,
            "verify_batches": list(VERIFY_BATCHES), "export_seconds": seconds,
            # why the TorchScript exporter was used, the innermost error of dynamo's converter
            "fallback_reason": _innermost(errors["dynamo"]) if "dynamo" in errors else None}


def read_metadata(path) -> dict[str, str]:
    """The metadata_props of an ONNX file (vitnas.exporter, vitnas.opset) and its opset imports."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props} | {
        "opset_import": {o.domain or "ai.onnx": o.version for o in m.opset_import}}


def export_model_file(weights, space, path, opset: int = DEFAULT_OPSET, exporter: str = "auto") -> dict:
    """`export_onnx` of a model file (safetensors with its arch in the metadata, as retraining and
    weight export write them), with the architecture's depth for the tolerance."""
    from .model_file import load_arch, load_model

    return export_onnx(load_model(weights, space), space.img_size, space.in_chans, path, opset,
                       depth=load_arch(weights).depth, exporter=exporter)
