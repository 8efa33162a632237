"""The search-space families side by side: every space's retrained models of one seed, and its searched
networks with the supernet's inherited weights untrained (the export stage, `inh-<budget>`), in one
table (test top-1, params, MACs, batch-1 latency, throughput, COCO box AP) and four figures: top-1
against MACs, top-1 against measured throughput (as ViT-ResNAS draws its trade-offs), top-1 against
measured batch-1 latency (torch eager) and box AP against MACs (retrained backbones only).

`vitnas.report` loads every space's models (results/<experiment>/<space>/seed<s>/{retrain,export,transfer}/)
and hands them here; this module writes tables/families.* and figures/families_{macs,throughput,latency,detection}.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from .results import INHERITED, by_budget_then_kind
from .tables import MACS_CONVENTION, float_decimals, macs_unit, new_figure, save_figure, write_table


KINDS = {"evo": "searched", INHERITED: "inherited (untrained)", "deit": "hand-designed"}  # marker legend


def families_frame(spaces: dict[str, tuple]) -> pd.DataFrame:
    """One row per retrained model and per export of every space; `spaces`: name -> (family, its
    models' metrics, their detection results[, its exports' metrics]), as `vitnas.results.load_metrics`,
    `load_detection` and `load_inherited` read them."""
    frames = []
    for name, (family, metrics, detection, *inherited) in spaces.items():
        models = by_budget_then_kind(pd.concat([metrics, *inherited], ignore_index=True))
        frames.append(models.merge(detection[["model", "AP", "AP50"]], on="model", how="left",
                                   validate="one_to_one").assign(space=name, family=family))
    return pd.concat(frames, ignore_index=True)


def families_table(df: pd.DataFrame) -> pd.DataFrame:
    unit, scale = macs_unit(df["macs"].max())
    return pd.DataFrame({
        "space": df["space"], "family": df["family"], "model": df["model"], "budget": df["budget"],
        "top-1 (%)": df["top1"].astype(float), "params (M)": df["params"] / 1e6,
        f"MACs ({unit})": df["macs"] / scale, "latency torch (ms)": df["latency_torch_ms"].astype(float),
        "latency ORT (ms)": df["latency_ort_ms"].astype(float), "throughput (img/s)": df["throughput"].astype(float),
        "box AP (%)": df["AP"].astype(float), "AP50 (%)": df["AP50"].astype(float),
    })


def families_figure(df: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, log_x: bool = False):
    """`y` against `x` per model, a colour per space, a marker per kind (searched, inherited,
    baseline); the line joins each space's retrained models (an export sits at its searched network's x)."""
    fig = new_figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    data = df.assign(kind=df["kind"].map(KINDS))
    kinds = [k for k in KINDS.values() if k in set(data["kind"])]
    spaces = list(dict.fromkeys(data["space"]))  # one colour per space, the same for points and line
    palette = dict(zip(spaces, sns.color_palette(n_colors=len(spaces))))
    sns.scatterplot(data=data, x=x, y=y, hue="space", hue_order=spaces, palette=palette, style="kind",
                    style_order=kinds, s=70, ax=ax)
    for space, group in data[data["kind"] != KINDS[INHERITED]].groupby("space"):
        front = group.sort_values(x)
        ax.plot(front[x], front[y], lw=0.8, alpha=0.5, color=palette[space])
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)  # outside: it hid points inside
    return fig


def write_families(df: pd.DataFrame, tables: Path, figures: Path, seed: int, formats=("png", "pdf"),
                   dpi: int = 150) -> pd.DataFrame:
    """tables/families.* and the four figures, from `families_frame`; returns the table."""
    table = families_table(df)
    write_table(table, tables / "families",
                f"The search-space families side by side (seed {seed}): retrained models and the searched "
                "networks with the supernet's inherited weights, untrained (inh-<budget>), test top-1, size, "
                "measured batch-1 latency (median; torch eager and onnxruntime) and throughput, and COCO box "
                "AP (retrained backbones).",
                float_decimals(table, 2, **{"throughput (img/s)": 0, "latency torch (ms)": 3,
                                            "latency ORT (ms)": 3}), MACS_CONVENTION)
    unit, scale = macs_unit(df["macs"].max())
    df = df.assign(macs_scaled=df["macs"] / scale)
    figures_by_name = {
        "families_macs": families_figure(df, "macs_scaled", "top1", f"MACs ({unit})", "test top-1 (%)"),
        "families_throughput": families_figure(df, "throughput", "top1", "throughput (img/s, measured)",
                                               "test top-1 (%)", log_x=True),
        "families_latency": families_figure(df, "latency_torch_ms", "top1",
                                            "batch-1 latency (ms, torch eager, measured)", "test top-1 (%)",
                                            log_x=True),
        "families_detection": families_figure(df[df["kind"] != INHERITED], "macs_scaled", "AP",
                                              f"backbone MACs ({unit})", "box AP (%)"),
    }
    for name, fig in figures_by_name.items():
        save_figure(fig, figures / name, formats, dpi)
    return table
