"""Writing the search-quality study (`search_quality.study`): its raw records (runs, curves, the
full-precision summary and its Markdown), the regret-vs-evaluations figure, and the report's table.

`write_study` writes into one folder (benchmarks/search_quality.py's --out); `make_search_quality_report`
runs the study at the experiment's search size (and the sizes `search_quality.sizes` names) and writes
it where the `search_quality` rule declares (vitnas.results), the report's table included.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import results
from .io import write_text
from .search_quality import COVERAGE, Study, sizes, study
from .tables import check_formats, float_decimals, new_figure, save_figure, write_table

FIGURE = "regret_vs_evaluations"


def markdown(summary: pd.DataFrame) -> str:
    """The summary as benchmarks/README.md shows it: regrets per strategy and the paired differences."""
    fmt = lambda x, d=3: "" if x != x else f"{x:.{d}f}"
    ci = lambda row, k: "" if not isinstance(row.get(k), (list, tuple)) else (
        f"{row[k.removesuffix('_ci')]:+.3f} [{row[k][0]:+.3f}, {row[k][1]:+.3f}]")
    lines = ["| size | evals | window | networks | coverage | regret evo / rand / pareto | "
             "percentile evo / rand / pareto | evo - rand [95 % CI] | pareto - evo [95 % CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        r = r.to_dict()
        lines.append(
            f"| {r['size']} | {r['evaluations']} | {r['window']} [{r['fraction']:g} C, C] | {r['window_size']} | "
            f"{r['coverage']:.0%}{'' if r['coverage'] <= COVERAGE else ' (over 1/4)'} | "
            f"{fmt(r.get('evolution_regret', np.nan))} / {fmt(r.get('random_regret', np.nan))} / "
            f"{fmt(r.get('pareto_regret', np.nan))} | "
            f"{fmt(r.get('evolution_percentile', np.nan), 1)} / {fmt(r.get('random_percentile', np.nan), 1)} / "
            f"{fmt(r.get('pareto_percentile', np.nan), 1)} | "
            f"{ci(r, 'evolution_minus_random_ci')} | {ci(r, 'pareto_minus_evolution_ci')} |")
    return "\n".join(lines) + "\n"


def figure(curves: pd.DataFrame):
    """Mean regret (over seeds and windows) against evaluations per budget, one panel per size."""
    names = list(dict.fromkeys(curves["size"]))
    fig = new_figure(figsize=(3.6 * len(names), 3.2))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        for strategy, d in curves[curves["size"] == name].groupby("strategy", sort=False):
            mean = d.groupby("evaluations_per_budget")["mean_regret"].mean()  # over the windows
            ax.plot(mean.index, mean.values, label=strategy)
        ax.set(title=name, xlabel="evaluations per budget", xscale="log", yscale="log")
    axes[0].set_ylabel("mean regret (points)")
    axes[0].legend()
    fig.tight_layout()
    return fig


def write_study(result: Study, out: Path, formats=("png", "pdf"), dpi: int = 150) -> None:
    """runs.csv, curves.csv, summary.csv, summary.md (with the seconds per size) and the figure in `out`."""
    out = Path(out)
    check_formats(formats)
    write_text(out / "runs.csv", result.runs.to_csv(index=False))
    write_text(out / "curves.csv", result.curves.to_csv(index=False))
    write_text(out / "summary.csv", result.summary.to_csv(index=False))
    seconds = ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items())
    write_text(out / "summary.md", markdown(result.summary) + f"\nSeconds per size: {seconds}\n")
    save_figure(figure(result.curves), out / FIGURE, formats, dpi)


def report_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the report shows it: one row per (size, window), intervals as text."""
    def ci(r, k):
        v = r.get(f"{k}_ci")
        return f"[{v[0]:+.3f}, {v[1]:+.3f}]" if isinstance(v, (list, tuple)) else None

    rows = []
    for _, r in summary.iterrows():
        r = r.to_dict()
        rows.append({"size": r["size"], "evaluations": int(r["evaluations"]), "window": r["window"],
                     "fraction": r["fraction"], "networks": int(r["window_size"]), "coverage": r["coverage"],
                     "regret evolution": r.get("evolution_regret"), "regret random": r.get("random_regret"),
                     "regret pareto": r.get("pareto_regret"),
                     "evolution - random": r.get("evolution_minus_random"),
                     "evolution - random 95% CI": ci(r, "evolution_minus_random"),
                     "evolution vs random": r.get("evolution_vs_random"),
                     "pareto - evolution": r.get("pareto_minus_evolution"),
                     "pareto - evolution 95% CI": ci(r, "pareto_minus_evolution"),
                     "pareto vs evolution": r.get("pareto_vs_evolution")})
    return pd.DataFrame(rows)


def caption(seeds: int) -> str:
    return (f"Search quality on NAS-Bench-Macro (6,561 networks with known accuracy): regret (points below the "
            f"window's best mean accuracy) of the network each strategy returns, mean over search seeds "
            f"0-{seeds - 1}, at equal distinct evaluations; windows [f C, C] with C at percentiles of the "
            f"table's FLOPs. Differences are paired over seeds, 95 % BCa bootstrap intervals; negative "
            f"means the first strategy returns better networks.")


def make_search_quality_report(root, search: dict, names, seeds: int, formats=("png", "pdf"),
                               dpi: int = 150) -> Study:
    """The study at the experiment's search size (`search`, as "experiment") and the other sizes
    `names` asks for, on seeds 0..seeds-1: its records and figure in search_quality/ and the table
    in tables/search_quality.*."""
    check_formats(formats)
    result = study(sizes(search, names), seeds, echo=lambda n, s: print(f"{n}: {s:.1f} s", flush=True))
    write_study(result, Path(results.search_quality_dir(root)), formats, dpi)
    table = report_table(result.summary)
    write_table(table, Path(results.tables_dir(root)) / "search_quality", caption(seeds),
                float_decimals(table, 3, fraction="g", coverage=2))
    return result
