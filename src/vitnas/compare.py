"""The search-space families side by side: every space's retrained models of one seed in one table
(test top-1, params, MACs, throughput, COCO box AP) and three figures: top-1 against MACs, top-1
against measured throughput (as ViT-ResNAS draws its trade-offs) and box AP against MACs.

Reads results/<experiment>/<space>/seed<s>/{retrain,transfer}/<model>/ for each space; writes
results/<experiment>/tables/families.{csv,md,tex} and figures/families_{macs,throughput,detection}.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from .report import (MACS_CONVENTION, _float_decimals, _macs_unit, _new_figure, chain_dir, load_detection,
                     load_metrics, save_figure, write_table)


def load_families(results_dir, spaces: dict[str, tuple[str, list[str]]], seed: int) -> pd.DataFrame:
    """One row per retrained model of every space; `spaces`: name -> (family, model names)."""
    frames = []
    for name, (family, models) in spaces.items():
        chain = chain_dir(Path(results_dir) / name, seed)
        metrics = load_metrics(chain, models)
        detection = load_detection(chain, models)[["model", "AP", "AP50"]]
        frames.append(metrics.merge(detection, on="model", how="left", validate="one_to_one")
                      .assign(space=name, family=family))
    return pd.concat(frames, ignore_index=True)


def families_table(df: pd.DataFrame) -> pd.DataFrame:
    unit, scale = _macs_unit(df["macs"].max())
    return pd.DataFrame({
        "space": df["space"], "family": df["family"], "model": df["model"], "budget": df["budget"],
        "top-1 (%)": df["top1"].astype(float), "params (M)": df["params"] / 1e6,
        f"MACs ({unit})": df["macs"] / scale, "throughput (img/s)": df["throughput"].astype(float),
        "box AP (%)": df["AP"].astype(float), "AP50 (%)": df["AP50"].astype(float),
    })


def families_figure(df: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, log_x: bool = False):
    """`y` against `x` per model, a colour per space, a marker per kind (searched, baseline)."""
    fig = _new_figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    data = df.assign(kind=df["kind"].map({"evo": "searched", "deit": "hand-designed"}))
    spaces = list(dict.fromkeys(data["space"]))  # one colour per space, the same for points and line
    palette = dict(zip(spaces, sns.color_palette(n_colors=len(spaces))))
    sns.scatterplot(data=data, x=x, y=y, hue="space", hue_order=spaces, palette=palette, style="kind", s=70,
                    ax=ax)
    for space, group in data.groupby("space"):
        front = group.sort_values(x)
        ax.plot(front[x], front[y], lw=0.8, alpha=0.5, color=palette[space])
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)  # outside: it hid points inside
    return fig


def make_families_report(results_dir, spaces: dict[str, tuple[str, list[str]]], seed: int,
                         formats=("png", "pdf"), dpi: int = 150) -> pd.DataFrame:
    """Read every space's models (all inputs before any output), then write the table and figures."""
    results_dir = Path(results_dir)
    df = load_families(results_dir, spaces, seed)
    table = families_table(df)
    write_table(table, results_dir / "tables" / "families",
                f"The search-space families side by side (seed {seed}): retrained models, test top-1, "
                "size, measured throughput and COCO box AP.",
                _float_decimals(table, 2, **{"throughput (img/s)": 0}), MACS_CONVENTION)
    unit, scale = _macs_unit(df["macs"].max())
    df = df.assign(macs_scaled=df["macs"] / scale)
    figures = {
        "families_macs": families_figure(df, "macs_scaled", "top1", f"MACs ({unit})", "test top-1 (%)"),
        "families_throughput": families_figure(df, "throughput", "top1", "throughput (img/s, measured)",
                                               "test top-1 (%)", log_x=True),
        "families_detection": families_figure(df, "macs_scaled", "AP", f"backbone MACs ({unit})", "box AP (%)"),
    }
    for name, fig in figures.items():
        save_figure(fig, results_dir / "figures" / name, formats, dpi)
    return table
