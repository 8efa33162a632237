"""The search-quality study as the `search_quality` rule runs it: the sizes it reads from the
config, one summary row per (size, window) equal to direct calls of the strategies on the same
seeds, and the files it writes where vitnas.results says."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vitnas import config, results
from vitnas.cli import main as cli
from vitnas.search import n_evaluations
from vitnas.search_quality import (PERCENTILES, SCHEDULE, Size, paired_difference, run_pareto, run_strategy, sizes, study,
                                   windows)
from vitnas.search_quality_report import report_table
from vitnas.tabular import load_macro

# Small enough for seconds: 4 + 1 x (2 + 2) = 8 evaluations per window, 3 seeds.
SMALL = {"population": 4, "generations": 1, "parents": 2, "mutations": 2, "crossovers": 2, "mutation_prob": 0.3,
         "crossover": None, "min_budget_fraction": 0.9}
SEEDS = 3


@pytest.fixture(scope="module")
def table():
    return load_macro()


def test_sizes_read_the_search_section_and_name_the_papers():
    search = config.validate({})["search"]
    chosen = sizes(search, ["experiment", "vitas-paper"])
    assert list(chosen) == ["experiment", "vitas-paper"]
    own = chosen["experiment"]
    assert own.fraction == search["min_budget_fraction"] and own.percentiles == PERCENTILES and own.pareto
    assert own.schedule == {k: search[k] for k in SCHEDULE}
    assert n_evaluations(own.schedule) == search["population"] + search["generations"] * (
        search["mutations"] + search["crossovers"])
    paper = chosen["vitas-paper"]
    assert n_evaluations(paper.schedule) == 50 + 40 * (25 + 25) and not paper.pareto and paper.percentiles == (90,)
    assert sizes(search, ["default"], own="default")["default"] == own


def test_one_row_per_size_and_window_equal_to_direct_calls(table):
    chosen = {"small": Size(SMALL, 0.9, (25, 75), True)}
    result = study(chosen, SEEDS, table)
    assert list(zip(result.summary["size"], result.summary["window"])) == [("small", "p25"), ("small", "p75")]
    assert len(result.runs) == 3 * 2 * SEEDS  # strategies x windows x seeds
    wins = windows(table, (25, 75), 0.9)
    pareto = [run_pareto(table, wins, SMALL, seed) for seed in range(SEEDS)]
    for i, w in enumerate(wins):
        row = result.summary.iloc[i]
        evo = [run_strategy("evolution", table, w, SMALL, s)["regret"] for s in range(SEEDS)]
        rnd = [run_strategy("random", table, w, SMALL, s)["regret"] for s in range(SEEDS)]
        par = [p[i]["regret"] for p in pareto]
        assert row["evolution_regret"] == pytest.approx(np.mean(evo), abs=1e-12)
        assert row["random_regret"] == pytest.approx(np.mean(rnd), abs=1e-12)
        assert row["pareto_regret"] == pytest.approx(np.mean(par), abs=1e-12)
        diff = paired_difference(evo, rnd)
        assert row["evolution_minus_random"] == pytest.approx(diff["mean"], abs=1e-12)
        assert row["evolution_minus_random_ci"] == pytest.approx(diff["ci"], abs=1e-12)
        assert row["pareto_minus_evolution"] == pytest.approx(np.mean(par) - np.mean(evo), abs=1e-12)
        assert row["evaluations"] == 8 and row["window_size"] == w.size
        assert row["coverage"] == pytest.approx(8 / w.size)


def test_rule_writes_the_results_paths_and_the_report_table(tmp_path, table):
    """The CLI the rule calls, at a tiny experiment size: every declared file, the summary's
    columns, and the report table's rows equal the summary's."""
    cfg = {"experiment": "sq", "search": {k: v for k, v in SMALL.items() if k != "crossover"},
           "search_quality": {"sizes": ["experiment"], "seeds": SEEDS}, "figures": {"formats": ["png"]}}
    root = tmp_path / "results" / "sq"
    assert cli(["search-quality", "--config", json.dumps(cfg), "--results", str(root)]) == 0
    for path in [results.search_quality_runs(root), results.search_quality_curves(root),
                 results.search_quality_summary(root, "csv"), results.search_quality_summary(root, "md"),
                 results.search_quality_figure(root, "png")] + [
                 results.table(root, "search_quality", ext) for ext in ("csv", "md", "tex", "html")]:
        assert Path(path).is_file(), path
    summary = pd.read_csv(results.search_quality_summary(root, "csv"))
    assert list(summary["window"]) == [f"p{q}" for q in PERCENTILES] and set(summary["size"]) == {"experiment"}
    for column in ("evaluations", "window_size", "coverage", "evolution_regret", "random_regret", "pareto_regret",
                   "evolution_minus_random", "evolution_minus_random_ci", "evolution_vs_random",
                   "pareto_minus_evolution", "pareto_minus_evolution_ci", "pareto_vs_evolution"):
        assert column in summary.columns, column
    direct = study(sizes(config.validate(cfg)["search"], ["experiment"]), SEEDS, table).summary
    assert np.allclose(summary["evolution_regret"], direct["evolution_regret"], atol=1e-12)
    shown = pd.read_csv(results.table(root, "search_quality", "csv"))
    assert len(shown) == len(direct)
    # The report rounds to 3 decimals: equal within half a unit of the last digit.
    assert np.allclose(shown["regret pareto"], direct["pareto_regret"], atol=5e-4 + 1e-12)
    assert list(shown.columns) == list(report_table(direct).columns)
    assert "Search quality on NAS-Bench-Macro" in (root / "tables" / "search_quality.md").read_text()
