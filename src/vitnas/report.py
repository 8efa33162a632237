"""Figures and tables: the last stage, reading what search, random_search, retrain and transfer wrote.

Inputs, all under one experiment folder `results/<experiment>/`:
  search/<budget>/history.csv, search/<budget>/random_history.csv   (one row per evaluated candidate)
  retrain/<model>/metrics.json, transfer/<model>/coco_eval.json      (one file per retrained model)
  ablation/<variant>/{health,ranking,search}.json                    (with the ablation study)
Outputs: tables/{models,search_vs_random,detection}.{csv,md,tex} and
figures/{pareto,search_progress}.<format>; with the ablation study also tables/ablation.* and
figures/ablation_tau.<format>.

Every input is read before anything is written, so a missing file fails fast and leaves no partial
report; every output is written atomically, so an interrupted run never leaves a half-written file.
Figures use matplotlib's Agg canvas on `Figure` objects rather than pyplot, so importing this module
does not switch the backend of an interactive session and no figure is left open in pyplot's registry.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .io import atomic_path
from .spaces import parse_macs

MACS_CONVENTION = (
    "MACs are counted as timm / torch.utils.flop_counter count them: FLOPs/2 of conv and matmul ops, "
    "including QK^T and A·V; LayerNorm, softmax and GELU are not counted."
)

HISTORY_COLUMNS = ["method", "generation", "eval_index", "macs", "params", "accuracy"]
METRICS_KEYS = ["model", "kind", "budget", "top1", "params", "macs", "throughput", "throughput_device"]
AP_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
METHODS = ["evolution", "random"]  # fixed order, so colours mean the same thing in every figure
KINDS = ["evo", "deit"]

# Timestamps in PDF/SVG metadata would make identical reports differ byte for byte.
_STABLE_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


# ---------------------------------------------------------------------------------------- reading

def _require(path: Path, rule: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; it is made by the '{rule}' rule, run that first")
    return path


def _check_columns(found, needed, path: Path) -> None:
    missing = [c for c in needed if c not in found]
    if missing:
        raise ValueError(f"{path}: missing column(s)/key(s) {', '.join(missing)}")


def _read_history(path: Path, rule: str, budget: str) -> pd.DataFrame:
    df = pd.read_csv(_require(path, rule))
    _check_columns(df.columns, HISTORY_COLUMNS, path)
    # The folder name is the budget the Snakefile asked for; trust it over the column's dtype guess.
    return df.assign(budget=budget, budget_macs=parse_macs(budget))


def load_histories(results_dir, budgets: list[str]) -> pd.DataFrame:
    """Every candidate evaluated by evolution and by random search, for every budget, in one frame."""
    frames = []
    for budget in budgets:
        folder = Path(results_dir) / "search" / budget
        frames.append(_read_history(folder / "history.csv", "search", budget))
        frames.append(_read_history(folder / "random_history.csv", "random_search", budget))
    return pd.concat(frames, ignore_index=True)


def _read_json(path: Path, rule: str, keys: list[str]) -> dict:
    with open(_require(path, rule)) as f:
        record = json.load(f)
    _check_columns(record, keys, path)
    return {k: record[k] for k in keys}


def _by_budget_then_kind(df: pd.DataFrame) -> pd.DataFrame:
    """Budgets in MACs order (a string sort puts '10M' before '2M'); the found model before its baseline."""
    order = df.assign(_macs=df["budget"].map(parse_macs),
                      _kind=df["kind"].map({k: i for i, k in enumerate(KINDS)}).fillna(len(KINDS)))
    return order.sort_values(["_macs", "_kind", "model"], kind="stable").drop(columns=["_macs", "_kind"])


def load_metrics(results_dir, models: list[str]) -> pd.DataFrame:
    """One row per retrained model (its metrics.json without the arch), sorted by budget then kind."""
    rows = [_read_json(Path(results_dir) / "retrain" / m / "metrics.json", "retrain", METRICS_KEYS)
            for m in models]
    return _by_budget_then_kind(pd.DataFrame(rows, columns=METRICS_KEYS)).reset_index(drop=True)


def load_detection(results_dir, models: list[str]) -> pd.DataFrame:
    """One row per model: its COCO box APs, with null (no objects in that size range) as NaN."""
    keys = ["model", "detector", "steps", *AP_KEYS]
    rows = [_read_json(Path(results_dir) / "transfer" / m / "coco_eval.json", "transfer", keys)
            for m in models]
    df = pd.DataFrame(rows, columns=keys)
    aps = df[AP_KEYS].astype(float)
    df[AP_KEYS] = aps.where(aps >= 0)  # raw COCOeval writes -1 for "no objects"; same meaning as null
    return df


# ---------------------------------------------------------------------------------------- helpers

def pareto_front(df: pd.DataFrame, x: str = "macs", y: str = "accuracy") -> pd.DataFrame:
    """The rows no other row beats: nothing with x <= theirs has a higher y. Sorted by x, original
    index kept (so a caller can look up the arch); of exact duplicates only the first is kept."""
    ordered = df.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False], kind="stable")
    best_before = ordered[y].astype(float).cummax().shift(fill_value=-np.inf)
    return ordered[ordered[y] > best_before]


def _macs_unit(largest: float) -> tuple[str, float]:
    """One unit per table or axis, chosen by its largest value."""
    return ("G", 1e9) if largest >= 1e9 else ("M", 1e6)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _latex_escape(text: str) -> str:
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "·": r"$\cdot$"}  # U+00B7 needs TS1 under pdflatex; math mode works everywhere
    return "".join(specials.get(ch, ch) for ch in text)


# ---------------------------------------------------------------------------------------- tables

def write_table(df: pd.DataFrame, stem: Path, caption: str, decimals: dict[str, int],
                footnote: str = "") -> None:
    """Write `df` as <stem>.csv, <stem>.md (caption line above, footnote below) and <stem>.tex.

    `decimals` gives the digits shown per float column; the CSV holds the same rounded values, so
    every format shows the same numbers."""
    decimals = {c: d for c, d in decimals.items() if c in df.columns}
    df = df.round(decimals)
    _write_text(stem.with_suffix(".csv"), df.to_csv(index=False))

    # tabulate prints NaN as "nan"; only None becomes missingval.
    cells = df.astype(object).where(df.notna(), None)
    floatfmt = [f".{decimals[c]}f" if c in decimals else "g" for c in df.columns]
    md = cells.to_markdown(index=False, floatfmt=floatfmt, missingval="n/a")
    parts = [f"Table: {caption}", "", md, ""] + ([footnote, ""] if footnote else [])
    _write_text(stem.with_suffix(".md"), "\n".join(parts))

    tex_caption = _latex_escape(" ".join(filter(None, [caption, footnote])))
    tex = (df.style.hide(axis="index")
           .format({c: f"{{:.{d}f}}" for c, d in decimals.items()}, na_rep="--", escape="latex")
           .format_index(escape="latex", axis=1)
           .to_latex(caption=tex_caption, label=f"tab:{stem.name.replace('_', '-')}", hrules=True,
                     position_float="centering"))
    _write_text(stem.with_suffix(".tex"), tex)


def models_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per retrained model: size, test top-1 and throughput."""
    unit, scale = _macs_unit(metrics["macs"].max())
    return pd.DataFrame({
        "model": metrics["model"],
        "kind": metrics["kind"],
        "budget": metrics["budget"],
        "top-1 (%)": metrics["top1"].astype(float),
        "params (M)": metrics["params"] / 1e6,
        f"MACs ({unit})": metrics["macs"] / scale,
        "throughput (img/s)": metrics["throughput"].astype(float),
        "throughput device": metrics["throughput_device"],
    })


def _best_per_budget(histories: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per budget: evaluations, and the accuracy and MACs of the best candidate (first one on ties)."""
    rows = histories[histories["method"] == method].dropna(subset=["accuracy"])
    best = rows.loc[rows.groupby("budget", sort=False)["accuracy"].idxmax()].set_index("budget")
    best["evaluations"] = histories[histories["method"] == method].groupby("budget").size()
    return best[["evaluations", "accuracy", "macs"]]


def search_vs_random_table(histories: pd.DataFrame, budgets: list[str]) -> pd.DataFrame:
    """One row per budget: evolution against random search at (about) the same evaluations."""
    order = sorted(budgets, key=parse_macs)
    evo = _best_per_budget(histories, "evolution").reindex(order)
    rnd = _best_per_budget(histories, "random").reindex(order)
    unit, scale = _macs_unit(max(evo["macs"].max(), rnd["macs"].max()))
    return pd.DataFrame({
        "budget": order,
        "evolution evals": evo["evaluations"].to_numpy(),
        "random evals": rnd["evaluations"].to_numpy(),
        "evolution best (%)": evo["accuracy"].to_numpy(),
        "random best (%)": rnd["accuracy"].to_numpy(),
        f"evolution best MACs ({unit})": evo["macs"].to_numpy() / scale,
        f"random best MACs ({unit})": rnd["macs"].to_numpy() / scale,
        # From the unrounded accuracies, so it can differ by 0.01 from the difference of the columns.
        "difference (pp)": (evo["accuracy"] - rnd["accuracy"]).to_numpy(),
    })


def detection_table(detection: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per model: COCO box APs, in the models table's order (kind and budget come from it)."""
    merged = metrics[["model", "kind", "budget"]].merge(detection, on="model", how="left",
                                                        validate="one_to_one")
    return merged[["model", "kind", "budget", *AP_KEYS]]


def _detection_caption(detection: pd.DataFrame) -> str:
    detectors = ", ".join(sorted(detection["detector"].astype(str).unique()))
    steps = ", ".join(str(s) for s in sorted(detection["steps"].unique()))
    return (f"COCO box AP (%) with each retrained backbone in a {detectors} detector, "
            f"trained for {steps} steps; n/a: no objects of that size in the evaluation set.")


# ---------------------------------------------------------------------------------------- figures

def _new_figure(**kwargs) -> Figure:
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no GUI backend
    return fig


def save_figure(fig: Figure, stem: Path, formats, dpi: int) -> None:
    """Write `fig` as <stem>.<fmt> for each format, each file atomically."""
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight",
                        metadata=_STABLE_METADATA.get(fmt))


def _mark_budgets(ax, budgets: list[str], scale: float, label: bool) -> None:
    for budget in budgets:
        x = parse_macs(budget) / scale
        ax.axvline(x, color="0.4", linestyle="--", linewidth=0.9, zorder=0)
        if label:  # x in data units, y in axes units: the label sits just above the panel
            ax.text(x, 1.01, budget, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=8, color="0.3")


def pareto_figure(histories: pd.DataFrame, metrics: pd.DataFrame, budgets: list[str]) -> Figure:
    """Top: held-out accuracy (inherited weights) of every candidate and their Pareto front.
    Bottom, same MACs axis: test top-1 of the retrained models. Two panels because the two
    accuracies come from different weights and different data, so they do not share a y axis."""
    unit, scale = _macs_unit(max(histories["macs"].max(), metrics["macs"].max(),
                                 max(parse_macs(b) for b in budgets)))
    fig = _new_figure(figsize=(7.5, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])

    points = histories.assign(x=histories["macs"] / scale)
    sns.scatterplot(data=points, x="x", y="accuracy", hue="method", hue_order=METHODS,
                    style="method", style_order=METHODS, s=14, alpha=0.55, linewidth=0, ax=top)
    front = pareto_front(points, x="x", y="accuracy")
    # "post": the best accuracy reachable at MACs <= x stays flat until the next front point.
    top.step(front["x"], front["accuracy"], where="post", color="black", linewidth=1.2,
             label="Pareto front (all candidates)")
    _mark_budgets(top, budgets, scale, label=True)
    top.set_ylabel("held-out top-1 (%)\ninherited supernet weights")
    # Outside the axes: candidates fill the whole panel, so any inside corner hides some.
    top.legend(title="searched", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8,
               title_fontsize=8)

    models = metrics.assign(x=metrics["macs"] / scale)
    sns.scatterplot(data=models, x="x", y="top1", hue="kind", hue_order=KINDS, style="kind",
                    style_order=KINDS, markers={"evo": "*", "deit": "X"}, s=140,
                    palette={"evo": "tab:red", "deit": "tab:gray"}, ax=bottom)
    for _, row in models.iterrows():
        bottom.annotate(row["model"], (row["x"], row["top1"]), textcoords="offset points",
                        xytext=(6, 0), va="center", fontsize=7)
    _mark_budgets(bottom, budgets, scale, label=False)
    bottom.margins(x=0.08, y=0.25)  # room for the model-name labels
    bottom.set_ylabel("test top-1 (%)\nretrained from scratch")
    bottom.set_xlabel(f"MACs ({unit})")
    bottom.legend(title="retrained", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8,
                  title_fontsize=8)
    return fig


def best_so_far(histories: pd.DataFrame) -> pd.DataFrame:
    """Per budget, method and generation: the best accuracy of any candidate evaluated so far."""
    per_gen = (histories.groupby(["budget", "method", "generation"], as_index=False)["accuracy"].max()
               .sort_values(["budget", "method", "generation"]))
    per_gen["best so far"] = per_gen.groupby(["budget", "method"])["accuracy"].cummax()
    return per_gen


def search_progress_figure(histories: pd.DataFrame, budgets: list[str]) -> Figure:
    """One panel per budget: best held-out accuracy so far against generation, evolution vs random."""
    order = sorted(budgets, key=parse_macs)
    progress = best_so_far(histories)
    fig = _new_figure(figsize=(3.6 * len(order), 3.4), layout="constrained")
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    for ax, budget in zip(axes, order):
        sns.lineplot(data=progress[progress["budget"] == budget], x="generation", y="best so far",
                     hue="method", hue_order=METHODS, style="method", style_order=METHODS,
                     markers=True, dashes=False, ax=ax)
        ax.set_title(f"budget {budget} MACs")
        ax.set_xlabel("generation")
        ax.set_ylabel("")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(title=None, loc="lower right", fontsize=8)
    axes[0].set_ylabel("best held-out top-1 so far (%)\ninherited supernet weights")
    fig.suptitle("Search progress; random search's generations are consecutive chunks of "
                 "population-size evaluations", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------- ablation

ABLATION_HEALTH_KEYS = ["random_mean", "random_std", "smallest", "largest", "loss_spikes", "loss_nans"]


def load_ablation(results_dir, variants: list[str]) -> pd.DataFrame:
    """One row per ablation variant from ablation/<variant>/{health,ranking,search}.json."""
    rows = []
    for v in variants:
        folder = Path(results_dir) / "ablation" / v
        health = _read_json(folder / "health.json", "ablation_supernet", ABLATION_HEALTH_KEYS)
        ranking = _read_json(folder / "ranking.json", "ablation_ranking",
                             ["kendall_tau", "spearman_rho", "n_archs"])
        search = _read_json(folder / "search.json", "ablation_search", ["accuracy", "macs", "budget"])
        rows.append({"variant": v, **health, **ranking,
                     **{f"search_{k}": x for k, x in search.items()}})
    return pd.DataFrame(rows)


def ablation_table(ablation: pd.DataFrame) -> pd.DataFrame:
    """One row per variant: supernet health, loss stability, ranking quality, search result."""
    unit, scale = _macs_unit(ablation["search_macs"].max())
    return pd.DataFrame({
        "variant": ablation["variant"],
        "random mean (%)": ablation["random_mean"].astype(float),
        "random std (%)": ablation["random_std"].astype(float),
        "smallest (%)": ablation["smallest"].astype(float),
        "largest (%)": ablation["largest"].astype(float),
        "loss spikes": ablation["loss_spikes"].astype(int),
        "NaNs": ablation["loss_nans"].astype(int),
        "Kendall tau": ablation["kendall_tau"].astype(float),
        "Spearman rho": ablation["spearman_rho"].astype(float),
        "search best (%)": ablation["search_accuracy"].astype(float),
        f"search MACs ({unit})": ablation["search_macs"] / scale,
    })


def _ablation_caption(ablation: pd.DataFrame) -> str:
    n = ", ".join(str(x) for x in sorted(ablation["n_archs"].unique()))
    budget = ", ".join(sorted(ablation["search_budget"].astype(str).unique()))
    return ("ViTAS ablation, one small supernet per variant (full method, each technique off, "
            "AutoFormer-style). Held-out top-1 with inherited weights of random, smallest and largest "
            "sub-networks; loss spikes (logged loss above 1.5x the running median) and NaNs; Kendall "
            f"tau and Spearman rho between inherited and short stand-alone accuracy of {n} "
            f"architectures; best of an evolutionary search under {budget}.")


def ablation_tau_figure(ablation: pd.DataFrame) -> Figure:
    """Kendall tau per variant, as bars (the full method first, as in the table)."""
    fig = _new_figure(figsize=(1.0 + 0.8 * len(ablation), 3.4), layout="constrained")
    ax = fig.subplots()
    taus = ablation["kendall_tau"].astype(float)
    colours = ["tab:red" if v == "full" else "tab:gray" for v in ablation["variant"]]
    ax.bar(ablation["variant"], taus.fillna(0), color=colours)
    for x, tau in enumerate(taus):
        ax.annotate("n/a" if np.isnan(tau) else f"{tau:.2f}", (x, 0 if np.isnan(tau) else tau),
                    textcoords="offset points", xytext=(0, 3 if (np.isnan(tau) or tau >= 0) else -10),
                    ha="center", fontsize=8)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_ylim(min(-0.1, float(taus.min()) - 0.15 if taus.notna().any() else -0.1), 1.05)
    ax.set_ylabel("Kendall tau\ninherited vs stand-alone top-1")
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_title("Ranking quality of each ablation supernet", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------- entry

def _check_formats(formats) -> None:
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    unknown = [f for f in formats if f not in supported]
    if unknown:
        raise ValueError(f"figure format(s) {', '.join(unknown)} not supported; "
                         f"choose from {', '.join(sorted(supported))}")


def make_report(results_dir, budgets: list[str], models: list[str], formats=("png", "pdf"),
                dpi: int = 150, macs_convention: str = MACS_CONVENTION,
                ablation_variants: list[str] = ()) -> None:
    """Read every input under `results_dir`, then write tables/ and figures/ there (with
    `ablation_variants`, also the ablation table and figure)."""
    results_dir = Path(results_dir)
    _check_formats(formats)
    histories = load_histories(results_dir, budgets)
    metrics = load_metrics(results_dir, models)
    detection = load_detection(results_dir, models)
    ablation = load_ablation(results_dir, list(ablation_variants)) if ablation_variants else None

    tables = results_dir / "tables"
    write_table(
        models_table(metrics), tables / "models",
        "Retrained models: test top-1 after training from scratch, size, and measured throughput.",
        {"top-1 (%)": 2, "params (M)": 2, "MACs (M)": 2, "MACs (G)": 2, "throughput (img/s)": 1},
        footnote=macs_convention)
    svr = search_vs_random_table(histories, budgets)
    write_table(
        svr, tables / "search_vs_random",
        "Evolution vs random search with equal evaluations: best held-out top-1 (inherited supernet "
        "weights) and the MACs of that candidate; difference = evolution - random.",
        {c: 2 for c in svr.columns if "(%)" in c or "MACs" in c or "(pp)" in c},
        footnote=macs_convention)
    write_table(detection_table(detection, metrics), tables / "detection",
                _detection_caption(detection), {k: 2 for k in AP_KEYS})

    figures = results_dir / "figures"
    save_figure(pareto_figure(histories, metrics, budgets), figures / "pareto", formats, dpi)
    save_figure(search_progress_figure(histories, budgets), figures / "search_progress", formats, dpi)
    if ablation is not None:
        ab = ablation_table(ablation)
        write_table(ab, tables / "ablation", _ablation_caption(ablation),
                    {c: (3 if c in ("Kendall tau", "Spearman rho") else 2) for c in ab.columns
                     if ab[c].dtype.kind == "f"}, footnote=macs_convention)
        save_figure(ablation_tau_figure(ablation), figures / "ablation_tau", formats, dpi)
