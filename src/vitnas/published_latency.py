"""Batch-1 latency of the published networks, measured here, and top-1 against it.

The papers give no CPU latency, so the `published` stage times every references entry with an
architecture file (and every retrained model `published.match` compares with one) itself: the
stand-alone network at its own input (the arch file's `input`, else ImageNet's 224 px, 3 channels,
1000 classes; the reproduced model at its space's), random weights (the time does not depend on
them), batch 1, torch eager on the CPU with the stage's threads, timed by `vitnas.latency` (warm-up,
then median and IQR). The record (tables/published_latency.json) carries the machine; the figure
(figures/published_latency.<format>) draws the published ImageNet top-1 against it, and the matched
models of this run at the same input beside them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .arch import Arch
from .spaces import DATASETS

INPUT_KEYS = ("img_size", "in_chans", "num_classes")
PUBLISHED_INPUT = tuple(DATASETS["imagenet"][k] for k in INPUT_KEYS)  # what the papers report top-1 at
KINDS = {"published": "published (top-1 published, latency measured here)",
         "reproduced": "reproduced (this run's test top-1, latency measured here)"}


@dataclass(frozen=True)
class InputSpace:
    """What a family's `build_model` reads of a space, for a network outside any configured space:
    the input, and ViT-ResNAS's residual spatial reduction (the released networks use it)."""
    family: str
    img_size: int
    in_chans: int
    num_classes: int
    residual: bool = True


def arch_file(path) -> tuple[Arch, tuple[int, int, int]]:
    """The architecture of a references entry and the input it was published at."""
    spec = json.loads(Path(path).read_text())
    given = spec.get("input", {})
    return Arch.from_dict(spec), tuple(given.get(k, d) for k, d in zip(INPUT_KEYS, PUBLISHED_INPUT))


def _threads(machine: dict) -> str:
    return f"{machine['threads']} thread{'s' * (machine['threads'] > 1)}"


def setting(record: dict, img_size: int) -> str:
    """How a latency of `record` (`measure_all`) was measured, for the table's convention column."""
    m = record["machine"]
    return (f"torch eager, batch 1, {img_size} px, {m['device_name']}, {_threads(m)}, median of "
            f"{record['repeats']}")


def time_network(arch: Arch, inp: tuple, threads: int, warmup: int, repeats: int) -> dict:
    """Median and IQR (ms) of a batch-1 call of `arch`'s stand-alone network at `inp`, random weights."""
    import torch

    from . import latency
    from .families import build_model

    torch.manual_seed(0)
    model = build_model(arch, InputSpace(arch.family, *inp))
    row = latency.row(latency.measure(model, None, inp[0], inp[1], [1], threads, warmup, repeats), "torch", 1)
    return {"median_ms": row["median_ms"], "iqr_ms": row["iqr_ms"]}


def measure_all(networks: dict, threads: int, warmup: int, repeats: int, timer=None) -> dict:
    """{machine, warmup, repeats, models: name -> {input, median_ms, iqr_ms}} for `networks`
    (name -> (Arch, input)), one network in memory at a time (DeiT-B: 86 M parameters). `timer`:
    `time_network` or a stand-in with its signature."""
    import torch

    from . import latency

    timer = timer or time_network
    models = {name: {"input": dict(zip(INPUT_KEYS, inp)), **timer(arch, inp, threads, warmup, repeats)}
              for name, (arch, inp) in networks.items()}
    return {"machine": latency.machine(torch.device("cpu"), threads), "runtime": "torch eager", "batch": 1,
            "weights": "random (latency does not depend on them)", "warmup": warmup, "repeats": repeats,
            "models": models}


def figure_points(refs, record: dict, pairs, reproduced: dict) -> pd.DataFrame:
    """One point per published model with a top-1 and a latency measured here, and per matched
    reproduced model at the input of the published model it is matched with (top-1 at another
    input or class count is another quantity, so it is left off)."""
    models, rows = record["models"], []
    for key, entry in refs.entries.items():
        if entry.top1 is not None and key in models:
            rows.append({"model": entry.name, "kind": KINDS["published"], "top1": entry.top1,
                         "latency_ms": models[key]["median_ms"]})
    for space, model, key in pairs:
        name, rec = f"{space}/{model}", reproduced[(space, model)]
        target = models.get(key, {}).get("input")
        if (name in models and rec.get("top1") is not None and target is not None
                and tuple(target.values()) == tuple(rec["input"])
                and name not in {r["model"] for r in rows}):
            rows.append({"model": name, "kind": KINDS["reproduced"], "top1": float(rec["top1"]),
                         "latency_ms": models[name]["median_ms"]})
    return pd.DataFrame(rows, columns=["model", "kind", "top1", "latency_ms"])


def latency_figure(points: pd.DataFrame, machine: dict):
    """Top-1 against batch-1 latency (log scale), a marker per kind, each point named."""
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .tables import new_figure

    fig = new_figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    if len(points):
        kinds = [k for k in KINDS.values() if k in set(points["kind"])]
        sns.scatterplot(data=points, x="latency_ms", y="top1", hue="kind", hue_order=kinds, style="kind",
                        style_order=kinds, s=60, ax=ax)
        for p in points.itertuples():
            ax.annotate(p.model, (p.latency_ms, p.top1), xytext=(4, 3), textcoords="offset points", fontsize=7)
        ax.set_xscale("log")  # 1, 2, 5 x 10^n in plain numbers: latencies span two decades
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.15)  # room for the names of the rightmost points
        ax.legend(loc="lower right", fontsize=8)  # slower and worse: where points are sparse
    ax.set(xlabel=f"batch-1 latency (ms, torch eager, {machine['device_name']}, {_threads(machine)})",
           ylabel="ImageNet top-1 (%)")
    ax.xaxis.label.set_fontsize(8)
    ax.grid(alpha=0.3)
    return fig
