"""Figures and tables: the last stage, reading what the chain, the ablation and the replicates wrote.

Inputs, all under one experiment folder `results/<experiment>/`; the chain of replicate seed s
lives in seed<s>/:
  seed<s>/search/<budget>/history.csv, random_history.csv       (one row per evaluated candidate)
  seed<s>/retrain/<model>/metrics.json, transfer/<model>/coco_eval.json   (one per retrained model)
  seed<s>/supernet/<sn>/health.json, ranking.json               (per-budget supernets or "shared")
  ablation/<variant>/{health,ranking,search}.json               (with the ablation study)
Outputs of `make_report` (one seed): tables/{models,search_vs_random,detection,ranking,claims}
(.csv/.md/.tex, claims also .html) and figures/{pareto,search_progress}.<format>; with the
ablation study also tables/ablation.* and figures/ablation_tau.<format>. Outputs of
`make_replicates_report` (every seed): replicates/tables/{replicates,claims}.*.

Every input is read before anything is written, so a missing file fails fast and leaves no partial
report; every output is written atomically, so an interrupted run never leaves a half-written file.
Figures use matplotlib's Agg canvas on `Figure` objects rather than pyplot, so importing this module
does not switch the backend of an interactive session and no figure is left open in pyplot's registry.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .io import atomic_path
from .spaces import format_macs, parse_macs
from .stats import mean_interval, paired_tau_difference

MACS_CONVENTION = (
    "MACs are counted as timm / torch.utils.flop_counter count them: FLOPs/2 of conv and matmul ops, "
    "including QK^T and A·V; LayerNorm, softmax and GELU are not counted."
)

HISTORY_COLUMNS = ["method", "generation", "eval_index", "macs", "params", "accuracy", "accuracy_se",
                   "window_lo", "window_hi"]
METRICS_KEYS = ["model", "kind", "budget", "top1", "params", "macs", "throughput", "throughput_device"]
AP_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
SUPERNET_HEALTH_KEYS = ["budget", "usage", "warnings"]
RANKING_KEYS = ["scopes", "archs"]
SCOPE_KEYS = ["kendall_tau", "kendall_tau_ci", "spearman_rho", "spearman_rho_ci", "n_archs", "ceiling"]
ARCH_KEYS = ["index", "budget", "inherited_accuracy", "standalone_accuracy"]
METHODS = ["evolution", "random"]  # fixed order, so colours mean the same thing in every figure
KINDS = ["evo", "deit"]
BOOTSTRAP_SEED = 0  # paired bootstraps of tau differences: the same draws in every report

# Timestamps in PDF/SVG metadata would make identical reports differ byte for byte.
_STABLE_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


# ---------------------------------------------------------------------------------------- reading

def chain_dir(results_dir, seed: int) -> Path:
    """The folder of one replicate of the chain supernet -> search -> retrain -> transfer."""
    return Path(results_dir) / f"seed{seed}"


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


def load_histories(chain, budgets: list[str]) -> pd.DataFrame:
    """Every candidate evaluated by evolution and by random search, for every budget, in one frame."""
    frames = []
    for budget in budgets:
        folder = Path(chain) / "search" / budget
        frames.append(_read_history(folder / "history.csv", "search", budget))
        frames.append(_read_history(folder / "random_history.csv", "random_search", budget))
    return pd.concat(frames, ignore_index=True)


def _read_record(path: Path, rule: str, keys: list[str]) -> dict:
    """The whole JSON record, after checking it has `keys` (JSON NaN reads as float NaN)."""
    with open(_require(path, rule)) as f:
        record = json.load(f)
    _check_columns(record, keys, path)
    return record


def _read_json(path: Path, rule: str, keys: list[str]) -> dict:
    record = _read_record(path, rule, keys)
    return {k: record[k] for k in keys}


def _read_ranking(path: Path, rule: str) -> dict:
    record = _read_record(path, rule, RANKING_KEYS)
    _check_columns(record["scopes"], ["all"], path)
    for scope in record["scopes"].values():
        _check_columns(scope, SCOPE_KEYS, path)
    for arch in record["archs"]:  # the paired tau differences match and score these
        _check_columns(arch, ARCH_KEYS, path)
    return record


def _by_budget_then_kind(df: pd.DataFrame) -> pd.DataFrame:
    """Budgets in MACs order (a string sort puts '10M' before '2M'); the found model before its baseline."""
    order = df.assign(_macs=df["budget"].map(parse_macs),
                      _kind=df["kind"].map({k: i for i, k in enumerate(KINDS)}).fillna(len(KINDS)))
    return order.sort_values(["_macs", "_kind", "model"], kind="stable").drop(columns=["_macs", "_kind"])


def load_metrics(chain, models: list[str]) -> pd.DataFrame:
    """One row per retrained model (its metrics.json without the arch), sorted by budget then kind."""
    rows = [_read_json(Path(chain) / "retrain" / m / "metrics.json", "retrain", METRICS_KEYS)
            for m in models]
    return _by_budget_then_kind(pd.DataFrame(rows, columns=METRICS_KEYS)).reset_index(drop=True)


def load_detection(chain, models: list[str]) -> pd.DataFrame:
    """One row per model: its COCO box APs, with null (no objects in that size range) as NaN."""
    keys = ["model", "detector", "steps", *AP_KEYS]
    rows = [_read_json(Path(chain) / "transfer" / m / "coco_eval.json", "transfer", keys)
            for m in models]
    df = pd.DataFrame(rows, columns=keys)
    aps = df[AP_KEYS].astype(float)
    df[AP_KEYS] = aps.where(aps >= 0)  # raw COCOeval writes -1 for "no objects"; same meaning as null
    return df


def _supernet_order(supernets: list[str]) -> list[str]:
    """Per-budget supernets in MACs order, the shared one last."""
    return sorted(supernets, key=lambda sn: (sn == "shared", 0 if sn == "shared" else parse_macs(sn)))


def load_supernets(chain, supernets: list[str]) -> dict:
    """Per supernet ("shared" or a budget): its health.json and ranking.json records."""
    out = {}
    for sn in _supernet_order(supernets):
        folder = Path(chain) / "supernet" / sn
        out[sn] = {"health": _read_record(folder / "health.json", "train_supernet", SUPERNET_HEALTH_KEYS),
                   "ranking": _read_ranking(folder / "ranking.json", "ranking")}
    return out


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


def format_window(lo: float, hi: float) -> str:
    return f"[{format_macs(lo)}, {format_macs(hi)}]"


def search_windows(histories: pd.DataFrame) -> dict[str, str]:
    """Per budget, its search window in MACs as text, from the histories' window_lo/window_hi
    (several distinct windows, e.g. seeds run with different configs, are all listed)."""
    pairs = histories[["budget", "window_lo", "window_hi"]].drop_duplicates()
    return {budget: "; ".join(format_window(lo, hi) for lo, hi in zip(g["window_lo"], g["window_hi"]))
            for budget, g in pairs.groupby("budget", sort=False)}


def _num(x) -> float:
    """A JSON number as float; null (a strict JSON writer's NaN) as NaN."""
    return float("nan") if x is None else float(x)


def _ci_text(ci, digits: int) -> str:
    """A 95 % interval as "[lo, hi]" at the table's precision; n/a when it is undefined."""
    lo, hi = (_num(v) for v in (ci if ci is not None else (None, None)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _setting(value) -> str:
    """A switch or setting as table text, the same in every format: yes/no, numbers as %g."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _latex_escape(text: str) -> str:
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "·": r"$\cdot$", "±": r"$\pm$"}  # need TS1 under pdflatex; math mode works everywhere
    return "".join(specials.get(ch, ch) for ch in text)


# ---------------------------------------------------------------------------------------- tables

_HTML_STYLE = ("body{font-family:sans-serif;font-size:13px;margin:12px}p{max-width:70em}"
               "table{border-collapse:collapse}th,td{padding:3px 8px;text-align:left;vertical-align:top}"
               "thead th{border-bottom:2px solid #333}tbody tr{border-bottom:1px solid #ddd}"
               "tbody tr:last-child{border-bottom:2px solid #333}")


def _html_page(df: pd.DataFrame, title: str, caption: str, footnote: str, specs: dict[str, str]) -> str:
    """A table as a small self-contained HTML page: caption, the table with the same number formats
    as the Markdown, footnote."""
    import html

    formatters = {c: (lambda x, spec=spec: "n/a" if pd.isna(x) else format(x, spec)) for c, spec in specs.items()}
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    numeric = "".join(f"td:nth-child({i + 1}){{text-align:right}}"
                      for i, c in enumerate(df.columns) if c not in text)
    df = df.assign(**{c: df[c].where(df[c].notna(), "n/a") for c in text})  # to_html prints None as "None"
    table = df.to_html(index=False, na_rep="n/a", border=0, formatters=formatters,
                       float_format=lambda x: f"{x:g}")
    notes = f"<p>{html.escape(footnote, quote=False)}</p>\n" if footnote else ""
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_HTML_STYLE}{numeric}</style></head>\n<body>\n<p>{html.escape(caption, quote=False)}</p>\n"
            f"{table}\n{notes}</body></html>\n")


def write_table(df: pd.DataFrame, stem: Path, caption: str, decimals: dict[str, int | str],
                footnote: str = "", latex: dict | None = None) -> None:
    """Write `df` as <stem>.csv, <stem>.md (caption line above, footnote below) and <stem>.tex.

    `decimals` gives the digits shown per float column; the CSV holds the same rounded values, so
    every format shows the same numbers. Also <stem>.html, the same table as a page for Snakemake's
    report (caption above, footnote below). A format spec instead of digits ("g", "+g") formats a column
    already rounded row by row. The LaTeX is a booktabs table (\\toprule, \\midrule, \\bottomrule);
    `latex` passes options to Styler.to_latex (e.g. environment="longtable", column_format)."""
    decimals = {c: d for c, d in decimals.items() if c in df.columns}
    specs = {c: (f".{d}f" if isinstance(d, int) else d) for c, d in decimals.items()}
    df = df.round({c: d for c, d in decimals.items() if isinstance(d, int)})
    _write_text(stem.with_suffix(".csv"), df.to_csv(index=False))

    # tabulate prints NaN as "nan"; only None becomes missingval.
    cells = df.astype(object).where(df.notna(), None)
    floatfmt = [specs.get(c, "g") for c in df.columns]
    text = [i for i, c in enumerate(df.columns) if not pd.api.types.is_numeric_dtype(df[c])]  # "82.0" stays
    md = cells.to_markdown(index=False, floatfmt=floatfmt, missingval="n/a", disable_numparse=text)
    parts = [f"Table: {caption}", "", md, ""] + ([footnote, ""] if footnote else [])
    _write_text(stem.with_suffix(".md"), "\n".join(parts))
    _write_text(stem.with_suffix(".html"), _html_page(df, stem.name, caption, footnote, specs))

    tex_caption = _latex_escape(" ".join(filter(None, [caption, footnote])))
    options = {"position_float": "centering"} | (latex or {})
    if options.get("environment") == "longtable":
        options.pop("position_float")  # a longtable is not a float
    tex = (df.style.hide(axis="index")
           .format({c: f"{{:{spec}}}" for c, spec in specs.items()}, na_rep="--", escape="latex")
           .format_index(escape="latex", axis=1)
           .to_latex(caption=tex_caption, label=f"tab:{stem.name.replace('_', '-')}", hrules=True, **options))
    # A longtable repeats its caption on every page; there, "(continued)" is enough.
    tex = tex.replace(f"\\caption[]{{{tex_caption}}}", "\\caption[]{(continued)}")
    _write_text(stem.with_suffix(".tex"), tex)


def _float_decimals(df: pd.DataFrame, digits: int = 2, **overrides: int) -> dict[str, int]:
    """`digits` for every float column, except the columns named in `overrides`."""
    return {c: overrides.get(c, digits) for c in df.columns if df[c].dtype.kind == "f"}


def models_table(metrics: pd.DataFrame, windows: dict[str, str]) -> pd.DataFrame:
    """One row per retrained model: its search window, size, test top-1 and throughput."""
    unit, scale = _macs_unit(metrics["macs"].max())
    return pd.DataFrame({
        "model": metrics["model"],
        "kind": metrics["kind"],
        "budget": metrics["budget"],
        "window": metrics["budget"].map(windows),
        "top-1 (%)": metrics["top1"].astype(float),
        "params (M)": metrics["params"] / 1e6,
        f"MACs ({unit})": metrics["macs"] / scale,
        "throughput (img/s)": metrics["throughput"].astype(float),
        "throughput device": metrics["throughput_device"],
    })


def best_per_budget(histories: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per budget: evaluations, and the accuracy, its SE and the MACs of the best candidate (first
    one on ties)."""
    rows = histories[histories["method"] == method].dropna(subset=["accuracy"])
    best = rows.loc[rows.groupby("budget", sort=False)["accuracy"].idxmax()].set_index("budget")
    best["evaluations"] = histories[histories["method"] == method].groupby("budget").size()
    return best[["evaluations", "accuracy", "accuracy_se", "macs"]]


def search_vs_random_table(histories: pd.DataFrame, budgets: list[str]) -> pd.DataFrame:
    """One row per budget: evolution against random search at (about) the same evaluations."""
    order = sorted(budgets, key=parse_macs)
    evo = best_per_budget(histories, "evolution").reindex(order)
    rnd = best_per_budget(histories, "random").reindex(order)
    unit, scale = _macs_unit(max(evo["macs"].max(), rnd["macs"].max()))
    windows = search_windows(histories)
    return pd.DataFrame({
        "budget": order,
        "window": [windows.get(b) for b in order],
        "evolution evals": evo["evaluations"].to_numpy(),
        "random evals": rnd["evaluations"].to_numpy(),
        "evolution best (%)": evo["accuracy"].to_numpy(),
        "evolution SE (pp)": evo["accuracy_se"].to_numpy(float),
        "random best (%)": rnd["accuracy"].to_numpy(),
        "random SE (pp)": rnd["accuracy_se"].to_numpy(float),
        f"evolution best MACs ({unit})": evo["macs"].to_numpy() / scale,
        f"random best MACs ({unit})": rnd["macs"].to_numpy() / scale,
        # From the unrounded accuracies, so it can differ by 0.01 from the difference of the columns.
        "difference (pp)": (evo["accuracy"] - rnd["accuracy"]).to_numpy(),
    })


def detection_table(detection: pd.DataFrame, metrics: pd.DataFrame,
                    windows: dict[str, str]) -> pd.DataFrame:
    """One row per model: COCO box APs, in the models table's order (kind and budget come from it)."""
    merged = metrics[["model", "kind", "budget"]].merge(detection, on="model", how="left",
                                                        validate="one_to_one")
    merged["window"] = merged["budget"].map(windows)
    return merged[["model", "kind", "budget", "window", *AP_KEYS]]


def _detection_caption(detection: pd.DataFrame) -> str:
    detectors = ", ".join(sorted(detection["detector"].astype(str).unique()))
    steps = ", ".join(str(s) for s in sorted(detection["steps"].unique()))
    return (f"COCO box AP (%) with each retrained backbone in a {detectors} detector, "
            f"trained for {steps} steps; window: the MACs window its architecture was searched in; "
            "n/a: no objects of that size in the evaluation set.")


def _scope_columns(scope: dict) -> dict:
    """Kendall tau, Spearman rho and the ceiling of one ranking scope, each with its interval."""
    ceiling = scope["ceiling"] or {}
    return {"archs": int(scope["n_archs"]),
            "Kendall tau": _num(scope["kendall_tau"]), "tau CI": _ci_text(scope["kendall_tau_ci"], 3),
            "Spearman rho": _num(scope["spearman_rho"]), "rho CI": _ci_text(scope["spearman_rho_ci"], 3),
            "ceiling tau": _num(ceiling.get("kendall_tau")),
            "ceiling CI": _ci_text(ceiling.get("kendall_tau_ci"), 3)}


def _usage_columns(health: dict) -> dict:
    """The least-used layer's share of training steps, and the usage warnings train_supernet raised."""
    active = (health["usage"] or {}).get("layer_active") or []
    return {"min layer active (%)": 100 * min(active) if active else float("nan"),
            "usage warnings": len(health["warnings"] or [])}


def ranking_table(supernets: dict, windows: dict[str, str]) -> pd.DataFrame:
    """One row per supernet and ranking scope ("all" reference architectures, then "window")."""
    rows = []
    for sn, records in supernets.items():
        scopes = records["ranking"]["scopes"]
        for name in sorted(scopes, key=lambda s: (s != "all", s != "window", s)):
            rows.append({"supernet": sn, "window": windows.get(sn, "all budgets"), "scope": name,
                         **_scope_columns(scopes[name]), **_usage_columns(records["health"])})
    return pd.DataFrame(rows)


RANKING_CAPTION = (
    "Ranking quality of each supernet: Kendall tau and Spearman rho between the inherited-weight "
    "held-out top-1 and the stand-alone top-1 of the reference architectures (scope all: every "
    "reference architecture; window: those of the supernet's own budget), with 95 % percentile-"
    "bootstrap intervals over the architectures; ceiling: tau between two stand-alone training seeds "
    "of the same architectures, the best a supernet can be expected to reach; min layer active: the "
    "least-used layer's share of training steps; usage warnings: layers trained too rarely."
)


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

ABLATION_HEALTH_KEYS = ["arm", "random_mean", "random_std"]
ABLATION_SEARCH_KEYS = ["budget", "window", "accuracy", "macs"]
# The arm's settings shown in the ablation table (health.json "arm"), with their column names.
ARM_COLUMNS = {"sharing": "sharing", "private_tokens": "private tokens", "private_qk": "private Q/K",
               "identity_shifting": "identity shifting", "sampling": "sampling",
               "identity_prob": "identity prob", "recipe": "recipe", "drop_path": "drop path"}
AUGMENT_KEYS = {"mixup", "cutmix", "randaugment", "random_erasing"}  # in the arm record, not the table


def arm_columns(ablation: dict) -> dict[str, str]:
    """Arm record key -> column name, for the keys the arms record: ViTAS's switches in their
    order, then any other family's (archs per batch, residual, ...)."""
    arms = [r["health"]["arm"] or {} for r in ablation.values()]
    keys = [k for k in ARM_COLUMNS if any(k in a for a in arms)]
    keys += [k for k in dict.fromkeys(k for a in arms for k in a) if k not in ARM_COLUMNS and k not in AUGMENT_KEYS]
    return {k: ARM_COLUMNS.get(k, k.replace("_", " ")) for k in keys}


def load_ablation(results_dir, variants: list[str]) -> dict:
    """Per ablation variant, its health, ranking and search records from ablation/<variant>/."""
    out = {}
    for v in variants:
        folder = Path(results_dir) / "ablation" / v
        out[v] = {"health": _read_record(folder / "health.json", "ablation_supernet", ABLATION_HEALTH_KEYS),
                  "ranking": _read_ranking(folder / "ranking.json", "ablation_ranking"),
                  "search": _read_record(folder / "search.json", "ablation_search", ABLATION_SEARCH_KEYS)}
    return out


def paired_archs(a: dict, b: dict) -> pd.DataFrame:
    """The reference architectures both ranking records scored, matched by index and budget:
    inherited accuracy under `a` and under `b`, and the stand-alone accuracy (the truth)."""
    left, right = (pd.DataFrame(r["archs"], columns=ARCH_KEYS).astype({"budget": str}) for r in (a, b))
    pairs = left.merge(right, on=["index", "budget"], suffixes=("_a", "_b"), validate="one_to_one")
    return pd.DataFrame({"inherited_a": pairs["inherited_accuracy_a"],
                         "inherited_b": pairs["inherited_accuracy_b"],
                         "standalone": pairs["standalone_accuracy_a"]})


def tau_difference(a: dict, b: dict, bootstrap: int) -> dict:
    """tau(a) - tau(b) against the stand-alone accuracy on the architectures both scored, with a
    paired bootstrap 95 % interval: {difference, ci, n_archs}."""
    pairs = paired_archs(a, b)
    if len(pairs) < 2:  # no ranking, let alone an interval
        nan = float("nan")
        return {"difference": nan, "ci": [nan, nan], "n_archs": len(pairs)}
    out = paired_tau_difference(pairs["inherited_a"], pairs["inherited_b"], pairs["standalone"],
                                bootstrap, BOOTSTRAP_SEED)
    return out | {"n_archs": len(pairs)}


def ablation_scores(ablation: dict) -> pd.DataFrame:
    """Per variant, scope "all": Kendall tau with its interval, and the ceiling (for the figure)."""
    rows = []
    for v, records in ablation.items():
        scope = records["ranking"]["scopes"]["all"]
        lo, hi = (_num(x) for x in (scope["kendall_tau_ci"] or (None, None)))
        rows.append({"variant": v, "tau": _num(scope["kendall_tau"]), "tau_lo": lo, "tau_hi": hi,
                     "ceiling": _num((scope["ceiling"] or {}).get("kendall_tau"))})
    return pd.DataFrame(rows, columns=["variant", "tau", "tau_lo", "tau_hi", "ceiling"])


def _versus_full(ablation: dict, variant: str, bootstrap: int) -> dict:
    """tau(variant) - tau(full) with its paired interval; n/a for full itself or without full."""
    if variant == "full" or "full" not in ablation:
        return {"tau - tau(full)": float("nan"), "tau - tau(full) CI": "n/a"}
    d = tau_difference(ablation[variant]["ranking"], ablation["full"]["ranking"], bootstrap)
    return {"tau - tau(full)": d["difference"], "tau - tau(full) CI": _ci_text(d["ci"], 3)}


def ablation_table(ablation: dict, bootstrap: int = 2000) -> pd.DataFrame:
    """One row per variant: its settings, supernet health, ranking quality against the ceiling and
    against the full method, and its search result."""
    unit, scale = _macs_unit(max(float(r["search"]["macs"]) for r in ablation.values()))
    rows = []
    for v, records in ablation.items():
        health, search = records["health"], records["search"]
        scope = _scope_columns(records["ranking"]["scopes"]["all"])
        rows.append({
            "variant": v,
            **{name: _setting((health["arm"] or {}).get(key)) for key, name in arm_columns(ablation).items()},
            "random mean (%)": _num(health["random_mean"]), "random std (%)": _num(health["random_std"]),
            **{k: scope[k] for k in ("Kendall tau", "tau CI", "Spearman rho", "ceiling tau")},
            **_versus_full(ablation, v, bootstrap),
            "search best (%)": _num(search["accuracy"]),
            f"search MACs ({unit})": float(search["macs"]) / scale,
        })
    return pd.DataFrame(rows)


def _ablation_caption(ablation: dict, bootstrap: int) -> str:
    n = ", ".join(sorted({str(r["ranking"]["scopes"]["all"]["n_archs"]) for r in ablation.values()}))
    budgets = ", ".join(sorted({str(r["search"]["budget"]) for r in ablation.values()}))
    windows = ", ".join(sorted({format_window(*r["search"]["window"]) for r in ablation.values()}))
    return ("Ablation, one small supernet per variant (the full method, then each technique off or "
            f"swapped), each trained for the {budgets} budget; its settings; held-out "
            "top-1 with inherited weights of random sub-networks (mean and std); Kendall tau (with its "
            "95 % percentile-bootstrap interval over the architectures) and Spearman rho between "
            f"inherited and stand-alone top-1 of {n} reference architectures, and the ceiling (tau "
            "between two stand-alone seeds); tau - tau(full): the difference to the full method on the "
            f"same architectures with a paired-bootstrap 95 % interval ({bootstrap} resamples); best "
            f"held-out top-1 of an evolutionary search in the window {windows} MACs.")


def _draw_ceiling(ax, x: np.ndarray, ceilings: pd.Series) -> None:
    """The ceiling as one line when every variant shares it (the same reference), else per bar."""
    label = "ceiling: tau between two stand-alone seeds"
    finite = ceilings.dropna()
    if finite.nunique() == 1:
        ax.axhline(finite.iloc[0], color="tab:blue", linestyle=":", linewidth=1.4, label=label)
    elif len(finite):
        keep = ceilings.notna().to_numpy()
        ax.hlines(ceilings[keep], x[keep] - 0.4, x[keep] + 0.4, color="tab:blue", linestyle=":",
                  linewidth=1.4, label=label)


def ablation_tau_figure(ablation: dict) -> Figure:
    """Kendall tau per variant as bars with their 95 % bootstrap intervals (the full method first,
    as in the table), and the ceiling a supernet can be expected to reach."""
    s = ablation_scores(ablation)
    fig = _new_figure(figsize=(3.5 + 0.8 * len(s), 3.6), layout="constrained")  # room for the legend
    ax = fig.subplots()
    x, taus = np.arange(len(s)), s["tau"].fillna(0)
    colours = ["tab:red" if v == "full" else "tab:gray" for v in s["variant"]]
    ax.bar(x, taus, color=colours)
    below = (s["tau"] - s["tau_lo"]).clip(lower=0).fillna(0)
    above = (s["tau_hi"] - s["tau"]).clip(lower=0).fillna(0)
    ax.errorbar(x, taus, yerr=[below, above], fmt="none", ecolor="black", elinewidth=1, capsize=3,
                label="95 % bootstrap interval")
    for xi, tau, top, bottom in zip(x, s["tau"], taus + above, taus - below):
        up = np.isnan(tau) or tau >= 0  # label beyond the interval's end, away from the axis
        ax.annotate("n/a" if np.isnan(tau) else f"{tau:.2f}", (xi, top if up else bottom),
                    textcoords="offset points", xytext=(0, 3 if up else -10), ha="center", fontsize=8)
    _draw_ceiling(ax, x, s["ceiling"])
    ax.axhline(0, color="0.3", linewidth=0.8)
    lowest = (taus - below).min() if len(s) else 0.0
    ax.set_ylim(min(-0.1, float(lowest) - 0.15), 1.15)
    ax.set_xticks(x, s["variant"], rotation=30, ha="right")
    ax.set_ylabel("Kendall tau\ninherited vs stand-alone top-1")
    # Outside the axes: bars run from -1 to 1, so any inside corner may hide one.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    ax.set_title("Ranking quality of each ablation supernet", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------- replicates

def replicates_table(metrics: pd.DataFrame, detection: pd.DataFrame,
                     windows: dict[str, str]) -> pd.DataFrame:
    """One row per model: test top-1 and COCO AP over the seeds (mean, SD, 95 % t-interval), the
    number of seeds and the mean MACs (the searched architecture differs from seed to seed).
    `metrics` and `detection` hold one row per model and seed, with a `seed` column."""
    merged = metrics.merge(detection[["model", "seed", "AP"]], on=["model", "seed"], how="left",
                           validate="one_to_one")
    unit, scale = _macs_unit(metrics["macs"].max())
    rows = []
    for model in _by_budget_then_kind(metrics.drop_duplicates("model"))["model"]:
        runs = merged[merged["model"] == model]
        top1, ap = (mean_interval(runs[c].astype(float).tolist()) for c in ("top1", "AP"))
        rows.append({"model": model, "kind": runs["kind"].iloc[0], "budget": runs["budget"].iloc[0],
                     "window": windows.get(runs["budget"].iloc[0]), "seeds": top1["n"],
                     f"MACs ({unit})": runs["macs"].mean() / scale,
                     "top-1 mean (%)": top1["mean"], "top-1 SD (pp)": top1["sd"],
                     "top-1 CI (%)": _ci_text(top1["ci"], 2),
                     "AP mean": ap["mean"], "AP SD": ap["sd"], "AP CI": _ci_text(ap["ci"], 2)})
    return pd.DataFrame(rows)


def _replicates_caption(seeds: list[int]) -> str:
    return (f"Every retrained model over {len(seeds)} replicate seeds ({', '.join(map(str, seeds))}) of "
            "the chain supernet, search, retrain, transfer: test top-1 and COCO box AP as mean, sample "
            "SD and 95 % t-interval of the mean (Student t, n-1 degrees of freedom; n/a with one seed); "
            "MACs: mean over the seeds; window: the MACs window searched in.")


# ---------------------------------------------------------------------------------------- entry

def _check_formats(formats) -> None:
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    unknown = [f for f in formats if f not in supported]
    if unknown:
        raise ValueError(f"figure format(s) {', '.join(unknown)} not supported; "
                         f"choose from {', '.join(sorted(supported))}")


def make_report(results_dir, budgets: list[str], models: list[str], seed: int, supernets: list[str],
                formats=("png", "pdf"), dpi: int = 150, ablation_variants: list[str] = (), family: str = "vit",
                bootstrap: int = 2000) -> None:
    """Read every input of the chain of `seed` (and, with `ablation_variants`, of the ablation)
    under `results_dir`, then write tables/ and figures/ there, the claims table included."""
    from .claims import claims_table, write_claims  # not at the top: claims imports this module

    results_dir = Path(results_dir)
    _check_formats(formats)
    chain = chain_dir(results_dir, seed)
    histories = load_histories(chain, budgets)
    metrics = load_metrics(chain, models)
    detection = load_detection(chain, models)
    supernet_records = load_supernets(chain, supernets)
    ablation = load_ablation(results_dir, list(ablation_variants)) if ablation_variants else None
    claims = claims_table(results_dir, [seed], budgets, list(ablation_variants), bootstrap, family)
    windows = search_windows(histories)
    ab = ablation_table(ablation, bootstrap) if ablation is not None else None  # may fail: before writing

    tables = results_dir / "tables"
    models_df = models_table(metrics, windows)
    write_table(
        models_df, tables / "models",
        "Retrained models: test top-1 after training from scratch, size, and measured throughput; "
        f"window: the MACs window its architecture was searched in; one seed ({seed}).",
        _float_decimals(models_df, **{"throughput (img/s)": 1}), footnote=MACS_CONVENTION)
    svr = search_vs_random_table(histories, budgets)
    write_table(
        svr, tables / "search_vs_random",
        "Evolution vs random search with equal evaluations in each budget's MACs window: best held-out "
        "top-1 (inherited supernet weights), its standard error over the held-out images (SE, a "
        "binomial SE), and the MACs of that candidate; difference = evolution - random.",
        _float_decimals(svr), footnote=MACS_CONVENTION)
    write_table(detection_table(detection, metrics, windows), tables / "detection",
                _detection_caption(detection), {k: 2 for k in AP_KEYS})
    ranking = ranking_table(supernet_records, windows)
    write_table(ranking, tables / "ranking", RANKING_CAPTION,
                _float_decimals(ranking, 3, **{"min layer active (%)": 1}))
    write_claims(claims, tables / "claims")

    figures = results_dir / "figures"
    save_figure(pareto_figure(histories, metrics, budgets), figures / "pareto", formats, dpi)
    save_figure(search_progress_figure(histories, budgets), figures / "search_progress", formats, dpi)
    if ablation is not None:
        write_ablation(ablation, ab, tables, figures, bootstrap, formats, dpi)


def write_ablation(ablation: dict, table: pd.DataFrame, tables: Path, figures: Path, bootstrap: int,
                   formats, dpi: int) -> None:
    """tables/ablation.* and figures/ablation_tau.*, from `load_ablation` and `ablation_table`."""
    write_table(table, tables / "ablation", _ablation_caption(ablation, bootstrap),
                _float_decimals(table, 2, **{c: 3 for c in ("Kendall tau", "Spearman rho", "ceiling tau",
                                                            "tau - tau(full)")}),
                footnote=MACS_CONVENTION)
    save_figure(ablation_tau_figure(ablation), figures / "ablation_tau", formats, dpi)


def make_replicates_report(results_dir, budgets: list[str], models: list[str], seeds: list[int],
                           ablation_variants: list[str] = (), bootstrap: int = 2000, family: str = "vit",
                           formats=("png", "pdf"), dpi: int = 150) -> None:
    """Read every seed's chain (and the ablation), then write replicates/tables/: every model over
    the seeds and the claims with intervals over the seeds; with `ablation_variants` also the
    ablation table and figure (replicates/figures/)."""
    from .claims import claims_table, write_claims  # not at the top: claims imports this module

    results_dir = Path(results_dir)
    metrics, detection, histories = [], [], []
    for seed in seeds:
        chain = chain_dir(results_dir, seed)
        histories.append(load_histories(chain, budgets))
        metrics.append(load_metrics(chain, models).assign(seed=seed))
        detection.append(load_detection(chain, models).assign(seed=seed))
    claims = claims_table(results_dir, list(seeds), budgets, list(ablation_variants), bootstrap, family)
    windows = search_windows(pd.concat(histories, ignore_index=True))
    ablation = load_ablation(results_dir, list(ablation_variants)) if ablation_variants else None
    ab = ablation_table(ablation, bootstrap) if ablation is not None else None  # may fail: before writing

    tables = results_dir / "replicates" / "tables"
    table = replicates_table(pd.concat(metrics, ignore_index=True), pd.concat(detection, ignore_index=True),
                             windows)
    write_table(table, tables / "replicates", _replicates_caption(list(seeds)), _float_decimals(table),
                footnote=MACS_CONVENTION)
    write_claims(claims, tables / "claims")
    if ablation is not None:
        write_ablation(ablation, ab, tables, results_dir / "replicates" / "figures", bootstrap, formats, dpi)
