"""The tables and figures of one search space's run, built from what `vitnas.results` loaded;
`vitnas.report` writes them with `vitnas.tables`.

Tables: models (each retrained model's top-1, size, batch-1 latency and throughput), search_vs_random (evolution
against random search per budget), latency_vs_macs (a MACs pick against a latency search's under its
predicted latency), detection (COCO box APs), ranking (each supernet's ranking
quality and layer usage), ablation (one row per variant) and replicates (every model over the
replicate seeds). Figures: pareto (every candidate and the retrained models against MACs),
search_progress (best so far per generation), ablation_tau (each variant's Kendall tau) and, with
search.mode: pareto, pareto_front (the one search for every budget, its windows and picks).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import seaborn as sns

from .measures import best_per_budget, searched_method, tau_difference
from .results import AP_KEYS, KINDS, by_budget_then_kind
from .stats import mean_interval
from .tables import ci_text, format_window, macs_unit, new_figure, number, search_windows, setting_text
from .units import parse_macs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METHODS = ["evolution", "random", "pareto"]  # fixed order, so colours mean the same thing in every figure


def methods_in(histories: pd.DataFrame) -> list[str]:
    """The searches in `histories`, in METHODS order (a Pareto search replaces evolution)."""
    return [m for m in METHODS if m in set(histories["method"])]


# ---------------------------------------------------------------------------------------- tables

# What a model's weights went through, by its metrics' `init` (inherited rows: the export, untrained).
WEIGHTS = {"scratch": "trained from scratch", "inherited": "inherited, fine-tuned"}


def models_table(metrics: pd.DataFrame, windows: dict[str, str], inherited: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per retrained model and, given `inherited` (`results.load_inherited`), per searched
    network with the supernet's weights untrained: its search window, size, test top-1, batch-1
    latency (torch eager and onnxruntime) and throughput."""
    if inherited is not None and len(inherited):
        metrics = by_budget_then_kind(pd.concat([metrics, inherited.assign(init="untrained")], ignore_index=True))
    unit, scale = macs_unit(metrics["macs"].max())
    init = metrics["init"] if "init" in metrics else pd.Series("scratch", index=metrics.index)
    return pd.DataFrame({
        "model": metrics["model"],
        "kind": metrics["kind"],
        "budget": metrics["budget"],
        "window": metrics["budget"].map(windows),
        "weights": init.map(WEIGHTS).fillna("inherited, untrained"),
        "top-1 (%)": metrics["top1"].astype(float),
        "params (M)": metrics["params"] / 1e6,
        f"MACs ({unit})": metrics["macs"] / scale,
        **latency_columns(metrics),
        "throughput (img/s)": metrics["throughput"].astype(float),
        "throughput device": metrics["throughput_device"],
    }).reset_index(drop=True)


def latency_columns(metrics: pd.DataFrame) -> dict:
    """Batch-1 latency medians (ms), torch eager and onnxruntime, as retraining measured them."""
    return {"latency torch (ms)": metrics["latency_torch_ms"].astype(float),
            "latency ORT (ms)": metrics["latency_ort_ms"].astype(float)}


def models_caption(seed: int) -> str:
    return ("Models: test top-1, size, measured batch-1 latency (median over repeats; torch eager and "
            "onnxruntime, on the throughput device's threads) and throughput of each retrained model "
            "(weights: trained from scratch, or fine-tuned from the supernet's weights with retrain.init: "
            "inherited) and of each searched network with the supernet's inherited weights, untrained (kind "
            f"inh, the export stage); window: the MACs window its architecture was searched in; one seed ({seed}).")


SEARCH_VS_RANDOM_CAPTION = (
    "Evolution vs random search with equal evaluations in each budget's MACs window: best held-out "
    "top-1 (inherited supernet weights), its standard error over the held-out images (SE, a "
    "binomial SE), and the MACs of that candidate; difference = evolution - random."
)


def search_vs_random_table(histories: pd.DataFrame, budgets: list[str]) -> pd.DataFrame:
    """One row per budget: evolution against random search at (about) the same evaluations."""
    order = sorted(budgets, key=parse_macs)
    method = searched_method(histories)  # evolution, or the one Pareto search's in-window rows
    evo = best_per_budget(histories, method).reindex(order)
    rnd = best_per_budget(histories, "random").reindex(order)
    unit, scale = macs_unit(max(evo["macs"].max(), rnd["macs"].max()))
    windows = search_windows(histories)
    return pd.DataFrame({
        "budget": order,
        "window": [windows.get(b) for b in order],
        f"{method} evals": evo["evaluations"].to_numpy(),
        "random evals": rnd["evaluations"].to_numpy(),
        f"{method} best (%)": evo["accuracy"].to_numpy(),
        f"{method} SE (pp)": evo["accuracy_se"].to_numpy(float),
        "random best (%)": rnd["accuracy"].to_numpy(),
        "random SE (pp)": rnd["accuracy_se"].to_numpy(float),
        f"{method} best MACs ({unit})": evo["macs"].to_numpy() / scale,
        f"random best MACs ({unit})": rnd["macs"].to_numpy() / scale,
        # From the unrounded accuracies, so it can differ by 0.01 from the difference of the columns.
        "difference (pp)": (evo["accuracy"] - rnd["accuracy"]).to_numpy(),
    })


LATENCY_VS_MACS_CAPTION = (
    "Latency- against MACs-constrained search (search.latency_vs_macs): per seed and listed MACs budget, "
    "a latency-constrained search of the same supernet with the MACs search's pick's predicted latency as "
    "its budget; each pick's best held-out top-1 (inherited supernet weights), its latency predicted by the "
    "device's per-block table and measured end to end at batch 1 on the device; difference = latency pick - "
    "MACs pick. Empty when the space lists no budget."
)


def latency_vs_macs_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per seed and MACs budget of `results.load_latency_vs_macs`."""
    return pd.DataFrame({
        "seed": pairs["seed"], "MACs budget": pairs["macs_budget"], "latency budget": pairs["latency_budget"],
        "device": pairs["latency_device"],
        "MACs pick top-1 (%)": pairs["macs_accuracy"].astype(float),
        "MACs pick predicted (ms)": pairs["macs_predicted_ms"].astype(float),
        "MACs pick measured (ms)": pairs["macs_measured_ms"].astype(float),
        "latency pick top-1 (%)": pairs["latency_accuracy"].astype(float),
        "latency pick predicted (ms)": pairs["latency_predicted_ms"].astype(float),
        "latency pick measured (ms)": pairs["latency_measured_ms"].astype(float),
        "difference (pp)": (pairs["latency_accuracy"] - pairs["macs_accuracy"]).astype(float),
    })


def detection_table(detection: pd.DataFrame, metrics: pd.DataFrame,
                    windows: dict[str, str]) -> pd.DataFrame:
    """One row per model: COCO box APs, in the models table's order (kind and budget come from it)."""
    merged = metrics[["model", "kind", "budget"]].merge(detection, on="model", how="left",
                                                        validate="one_to_one")
    merged["window"] = merged["budget"].map(windows)
    return merged[["model", "kind", "budget", "window", *AP_KEYS]]


def detection_caption(detection: pd.DataFrame) -> str:
    detectors = ", ".join(sorted(detection["detector"].astype(str).unique()))
    steps = ", ".join(str(s) for s in sorted(detection["steps"].unique()))
    return (f"COCO box AP (%) with each retrained backbone in a {detectors} detector, "
            f"trained for {steps} steps; window: the MACs window its architecture was searched in; "
            "n/a: no objects of that size in the evaluation set.")


def _scope_columns(scope: dict) -> dict:
    """Kendall tau, Spearman rho and the ceiling of one ranking scope, each with its interval."""
    ceiling = scope["ceiling"] or {}
    return {"archs": int(scope["n_archs"]),
            "Kendall tau": number(scope["kendall_tau"]), "tau CI": ci_text(scope["kendall_tau_ci"], 3),
            "Spearman rho": number(scope["spearman_rho"]), "rho CI": ci_text(scope["spearman_rho_ci"], 3),
            "ceiling tau": number(ceiling.get("kendall_tau")),
            "ceiling CI": ci_text(ceiling.get("kendall_tau_ci"), 3)}


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
    "of the same architectures, the best a supernet can be expected to reach (n/a with one seed: "
    "reference.seeds: 2 adds it); min layer active: the "
    "least-used layer's share of training steps; usage warnings: layers trained too rarely."
)


# ---------------------------------------------------------------------------------------- figures

def pareto_front(df: pd.DataFrame, x: str = "macs", y: str = "accuracy") -> pd.DataFrame:
    """The rows no other row beats: nothing with x <= theirs has a higher y. Sorted by x, original
    index kept (so a caller can look up the arch); of exact duplicates only the first is kept."""
    ordered = df.dropna(subset=[x, y]).sort_values([x, y], ascending=[True, False], kind="stable")
    best_before = ordered[y].astype(float).cummax().shift(fill_value=-np.inf)
    return ordered[ordered[y] > best_before]


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
    unit, scale = macs_unit(max(histories["macs"].max(), metrics["macs"].max(),
                                 max(parse_macs(b) for b in budgets)))
    fig = new_figure(figsize=(7.5, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])

    points = histories.assign(x=histories["macs"] / scale)
    methods = methods_in(histories)
    sns.scatterplot(data=points, x="x", y="accuracy", hue="method", hue_order=methods,
                    style="method", style_order=methods, s=14, alpha=0.55, linewidth=0, ax=top)
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


def pareto_search_figure(history: pd.DataFrame, windows: dict[str, tuple[float, float]]) -> Figure:
    """The one Pareto search (search.mode: pareto): every evaluated network (held-out accuracy
    against MACs), the non-dominated front, each budget's window shaded, and each budget's pick
    (the most accurate network in its window, as `vitnas.pareto.pick`)."""
    from .pareto import pick

    unit, scale = macs_unit(history["macs"].max())
    fig = new_figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, (budget, (lo, hi)) in enumerate(sorted(windows.items(), key=lambda w: w[1][1])):
        ax.axvspan(lo / scale, hi / scale, color=f"C{i % 10}", alpha=0.15, linewidth=0,
                   label=f"window of {budget}")
        chosen = pick(history.to_dict("records"), lo, hi)
        if chosen is not None:
            ax.scatter(chosen["macs"] / scale, chosen["accuracy"], marker="*", s=220, color=f"C{i % 10}",
                       edgecolor="black", linewidth=0.6, zorder=4, label=f"pick of {budget}")
    ax.scatter(history["macs"] / scale, history["accuracy"], s=12, color="0.55", alpha=0.6, linewidth=0,
               label="evaluated", zorder=2)
    front = pareto_front(history.assign(x=history["macs"] / scale), x="x", y="accuracy")
    ax.step(front["x"], front["accuracy"], where="post", color="black", linewidth=1.2, zorder=3,
            label="Pareto front")
    ax.set_xlabel(f"MACs ({unit})")
    ax.set_ylabel("held-out top-1 (%)\ninherited supernet weights")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(f"One Pareto search for every budget: {len(history)} networks evaluated", fontsize=9)
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
    fig = new_figure(figsize=(3.6 * len(order), 3.4), layout="constrained")
    axes = fig.subplots(1, len(order), squeeze=False)[0]
    for ax, budget in zip(axes, order):
        sns.lineplot(data=progress[progress["budget"] == budget], x="generation", y="best so far",
                     hue="method", hue_order=methods_in(histories), style="method",
                     style_order=methods_in(histories),
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


def ablation_scores(ablation: dict) -> pd.DataFrame:
    """Per variant, scope "all": Kendall tau with its interval, and the ceiling (for the figure)."""
    rows = []
    for v, records in ablation.items():
        scope = records["ranking"]["scopes"]["all"]
        lo, hi = (number(x) for x in (scope["kendall_tau_ci"] or (None, None)))
        rows.append({"variant": v, "tau": number(scope["kendall_tau"]), "tau_lo": lo, "tau_hi": hi,
                     "ceiling": number((scope["ceiling"] or {}).get("kendall_tau"))})
    return pd.DataFrame(rows, columns=["variant", "tau", "tau_lo", "tau_hi", "ceiling"])


def _versus_full(ablation: dict, variant: str, bootstrap: int) -> dict:
    """tau(variant) - tau(full) with its paired interval; n/a for full itself or without full."""
    if variant == "full" or "full" not in ablation:
        return {"tau - tau(full)": float("nan"), "tau - tau(full) CI": "n/a"}
    d = tau_difference(ablation[variant]["ranking"], ablation["full"]["ranking"], bootstrap)
    return {"tau - tau(full)": d["difference"], "tau - tau(full) CI": ci_text(d["ci"], 3)}


def ablation_table(ablation: dict, bootstrap: int = 2000) -> pd.DataFrame:
    """One row per variant: its settings, supernet health, ranking quality against the ceiling and
    against the full method, and its search result."""
    unit, scale = macs_unit(max(float(r["search"]["macs"]) for r in ablation.values()))
    rows = []
    for v, records in ablation.items():
        health, search = records["health"], records["search"]
        scope = _scope_columns(records["ranking"]["scopes"]["all"])
        rows.append({
            "variant": v,
            **{name: setting_text((health["arm"] or {}).get(key)) for key, name in arm_columns(ablation).items()},
            "random mean (%)": number(health["random_mean"]), "random std (%)": number(health["random_std"]),
            **{k: scope[k] for k in ("Kendall tau", "tau CI", "Spearman rho", "ceiling tau")},
            **_versus_full(ablation, v, bootstrap),
            "search best (%)": number(search["accuracy"]),
            f"search MACs ({unit})": float(search["macs"]) / scale,
        })
    return pd.DataFrame(rows)


def ablation_caption(ablation: dict, bootstrap: int) -> str:
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
    fig = new_figure(figsize=(3.5 + 0.8 * len(s), 3.6), layout="constrained")  # room for the legend
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
    unit, scale = macs_unit(metrics["macs"].max())
    rows = []
    for model in by_budget_then_kind(metrics.drop_duplicates("model"))["model"]:
        runs = merged[merged["model"] == model]
        top1, ap = (mean_interval(runs[c].astype(float).tolist()) for c in ("top1", "AP"))
        rows.append({"model": model, "kind": runs["kind"].iloc[0], "budget": runs["budget"].iloc[0],
                     "window": windows.get(runs["budget"].iloc[0]), "seeds": top1["n"],
                     f"MACs ({unit})": runs["macs"].mean() / scale,
                     "top-1 mean (%)": top1["mean"], "top-1 SD (pp)": top1["sd"],
                     "top-1 CI (%)": ci_text(top1["ci"], 2),
                     "AP mean": ap["mean"], "AP SD": ap["sd"], "AP CI": ci_text(ap["ci"], 2)})
    return pd.DataFrame(rows)


def replicates_caption(seeds: list[int]) -> str:
    return (f"Every retrained model over {len(seeds)} replicate seeds ({', '.join(map(str, seeds))}) of "
            "the chain supernet, search, retrain, transfer: test top-1 and COCO box AP as mean, sample "
            "SD and 95 % t-interval of the mean (Student t, n-1 degrees of freedom; n/a with one seed); "
            "MACs: mean over the seeds; window: the MACs window searched in. Kind ft (retrain.compare_finetune): "
            "the searched network fine-tuned from the supernet's weights, not transferred (AP n/a).")
