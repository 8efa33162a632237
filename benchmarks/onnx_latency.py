"""Issue 19: ONNX export time and latency of the default config's retrained-model shapes (each
space's hand-designed baseline at its budget; weights as built, which do not change the timing).
Run from the repository root: PYTHONPATH=src python benchmarks/onnx_latency.py [OUT.json]."""
import json
import sys
import tempfile
from pathlib import Path

import torch

from vitnas import config
from vitnas.families import build_model, build_space, design_baseline
from vitnas.latency import measure, row
from vitnas.onnx_export import export_onnx

torch.set_num_threads(1)
cfg = config.load("config/config.yaml")
out = []
with tempfile.TemporaryDirectory() as tmp:
    for name in config.active_spaces(cfg):
        scfg = config.for_space(cfg, name)
        space = build_space(scfg)
        for budget in scfg["search"]["budgets"]:
            arch = design_baseline(scfg, space, budget)
            torch.manual_seed(0)
            model = build_model(arch, space).eval()
            path = Path(tmp) / f"{name}.onnx"
            onnx = export_onnx(model, space.img_size, space.in_chans, path, depth=arch.depth)
            lat = measure(model, path, space.img_size, space.in_chans, [1, 64], threads=1, warmup=3, repeats=20)
            rec = {"space": name, "model": f"deit-{budget}", "macs": space.macs(arch), "onnx": onnx,
                   "latency": lat}
            out.append(rec)
            cells = " | ".join(f"{row(lat, rt, b)['median_ms']:.3f} ({row(lat, rt, b)['iqr_ms']:.3f})"
                               for rt in ("torch", "onnxruntime") for b in (1, 64))
            print(f"| {name} | deit-{budget} | {space.macs(arch) / 1e6:.2f} | {onnx['exporter']} | "
                  f"{onnx['export_seconds']:.1f} | {onnx['max_abs_diff']:.1e} | {cells} |", flush=True)
print(json.dumps(out[0]["latency"]["machine"]))
if len(sys.argv) > 1:
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
