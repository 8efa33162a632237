"""A model's measured latency: batch 1 and a throughput batch, torch eager and onnxruntime, on the
stage's device, with warm-up and then the median and interquartile range over repeats; the record
carries the machine, the thread count and the library versions, so a number is never read without
the conditions it was measured under.

On the CPU each call is timed with time.perf_counter and both runtimes get the same thread count
(torch.set_num_threads, onnxruntime's intra_op_num_threads). On a GPU torch runs under bf16
autocast and each call is timed with CUDA events after a synchronize (the GPU works asynchronously;
the host clock would time the launch only); onnxruntime runs on its CUDA provider where the
installed build has one, else on the CPU, as the row's provider says.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

RUNTIMES = ("torch", "onnxruntime")


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    import onnxruntime
    import timm

    return {"python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "timm": timm.__version__}


def machine(device: torch.device, threads: int) -> dict:
    """Where a measurement ran: device type and name, threads, host, versions."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": device.type, "device_name": name, "threads": threads, "host": platform.node(),
            "platform": platform.platform(), **versions()}


def summarise(seconds: list[float]) -> dict:
    """Median and interquartile range (numpy's linear quantiles) of per-call times, in ms."""
    ms = np.asarray(seconds, dtype=float) * 1e3
    q1, median, q3 = np.quantile(ms, [0.25, 0.5, 0.75])
    return {"median_ms": float(median), "iqr_ms": float(q3 - q1), "repeats": len(ms)}


def time_calls(call, warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds per call of `call()`, `repeats` times after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    out = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            torch.cuda.synchronize(device)
            out.append(start.elapsed_time(end) / 1e3)
        return out
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def torch_call(model: torch.nn.Module, x: torch.Tensor, device: torch.device):
    """One inference call of the eager model: float32 on the CPU, bf16 autocast on a GPU."""
    def call():
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            return model(x)
    return call


def ort_session(onnx_path, threads: int, device: torch.device):
    """An onnxruntime session on `threads` intra-op threads, on the device's provider if installed."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(onnx_path), opts, providers=providers)


def measure(model: torch.nn.Module, onnx_path, img_size: int, in_chans: int, batches, threads: int,
            warmup: int, repeats: int, device: torch.device | str = "cpu") -> dict:
    """{machine, rows}: one row per runtime and batch size with median and IQR (ms per call), the
    provider it ran on and images per second at the median. `onnx_path` None measures torch only."""
    device = torch.device(device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    model = model.eval().to(device)
    session = ort_session(onnx_path, threads, device) if onnx_path is not None else None
    rows = []
    try:
        for batch in batches:
            x = torch.randn(batch, in_chans, img_size, img_size, generator=torch.Generator().manual_seed(batch))
            calls = {"torch": (torch_call(model, x.to(device), device), device.type)}
            if session is not None:
                feed = {session.get_inputs()[0].name: x.numpy()}
                calls["onnxruntime"] = (lambda feed=feed: session.run(None, feed), session.get_providers()[0])
            for runtime, (call, provider) in calls.items():
                # onnxruntime is timed on the host clock: its run() returns once the outputs are ready.
                timer_device = device if runtime == "torch" else torch.device("cpu")
                stats = summarise(time_calls(call, warmup, repeats, timer_device))
                rows.append({"runtime": runtime, "batch": batch, "provider": provider,
                             "precision": "bf16 autocast" if runtime == "torch" and device.type == "cuda"
                             else "float32", **stats,
                             "images_per_second": batch / (stats["median_ms"] / 1e3)})
    finally:
        torch.set_num_threads(previous)
    return {"machine": machine(device, threads), "warmup": warmup, "rows": rows}


def row(record: dict, runtime: str, batch: int) -> dict | None:
    """The row of `runtime` at `batch` in a `measure` record."""
    return next((r for r in record["rows"] if r["runtime"] == runtime and r["batch"] == batch), None)
