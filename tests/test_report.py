"""The report stage: tables read back from disk, figures on disk, the Pareto helper, missing inputs."""
import json

import numpy as np
import pandas as pd
import pytest

from vitnas import report
from vitnas.io import atomic_path
from vitnas.report import make_report, pareto_front

BUDGETS = ["4M", "2M"]  # deliberately not in MACs order: tables must sort them
MODELS = ["deit-4M", "evo-2M", "evo-4M", "deit-2M"]
POP, GENERATIONS = 4, 3

# The planted best candidate per (budget, method): (accuracy, macs). Every other candidate scores lower.
BEST = {("2M", "evolution"): (81.257, 1_900_000), ("2M", "random"): (79.5, 1_500_000),
        ("4M", "evolution"): (84.0, 3_800_000), ("4M", "random"): (84.25, 3_990_000)}

METRICS = {
    "evo-2M": dict(kind="evo", budget="2M", top1=88.123, params=1_234_567, macs=1_951_234, throughput=5012.34),
    "deit-2M": dict(kind="deit", budget="2M", top1=86.5, params=1_500_000, macs=1_999_999, throughput=4800.0),
    "evo-4M": dict(kind="evo", budget="4M", top1=90.016, params=2_345_678, macs=3_876_543, throughput=3100.0),
    "deit-4M": dict(kind="deit", budget="4M", top1=89.0, params=2_900_000, macs=3_990_000, throughput=2950.5),
}
COCO = {m: dict(AP=10.0 + i, AP50=20.123 + i, AP75=9.5, APs=None if m == "deit-2M" else 1.25,
                APm=8.0, APl=15.0) for i, m in enumerate(METRICS)}


def _history(budget: str, method: str, rng) -> pd.DataFrame:
    n = POP * GENERATIONS
    budget_macs = float(budget[:-1]) * 1e6
    best_acc, best_macs = BEST[(budget, method)]
    accuracy = rng.uniform(50, 70, n)
    macs = rng.integers(int(0.3 * budget_macs), int(budget_macs), n)
    accuracy[n - 2], macs[n - 2] = best_acc, best_macs  # in the last generation
    return pd.DataFrame({
        "method": method, "generation": np.arange(n) // POP, "eval_index": np.arange(n),
        "arch": '{"patch": 4}', "macs": macs, "params": macs // 2, "accuracy": accuracy,
        "budget": budget, "budget_macs": budget_macs,
    })


def write_inputs(root):
    rng = np.random.default_rng(0)
    for budget in BUDGETS:
        folder = root / "search" / budget
        folder.mkdir(parents=True)
        _history(budget, "evolution", rng).to_csv(folder / "history.csv", index=False)
        _history(budget, "random", rng).to_csv(folder / "random_history.csv", index=False)
    for model, m in METRICS.items():
        (root / "retrain" / model).mkdir(parents=True)
        record = dict(model=model, **m, throughput_device="cpu (2 threads)", epochs=3,
                      train_seconds=12.5, arch={"patch": 4})
        (root / "retrain" / model / "metrics.json").write_text(json.dumps(record))
        (root / "transfer" / model).mkdir(parents=True)
        coco = dict(model=model, detector="retinanet", steps=50, **COCO[model])
        (root / "transfer" / model / "coco_eval.json").write_text(json.dumps(coco))
    return root


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = write_inputs(tmp_path_factory.mktemp("results"))
    make_report(root, BUDGETS, MODELS, formats=("png", "pdf"), dpi=60)
    return root


def test_models_table_values_and_order(out):
    table = pd.read_csv(out / "tables" / "models.csv")
    assert list(table["model"]) == ["evo-2M", "deit-2M", "evo-4M", "deit-4M"]
    expected = pd.DataFrame(METRICS).T.loc[table["model"]]
    assert list(table["MACs (M)"]) == [round(m / 1e6, 2) for m in expected["macs"]]
    assert list(table["params (M)"]) == [round(p / 1e6, 2) for p in expected["params"]]
    assert list(table["top-1 (%)"]) == [round(t, 2) for t in expected["top1"]]
    assert table.loc[0, "throughput (img/s)"] == 5012.3
    assert set(table["throughput device"]) == {"cpu (2 threads)"}


def test_search_vs_random_table(out):
    table = pd.read_csv(out / "tables" / "search_vs_random.csv").set_index("budget")
    assert list(table.index) == ["2M", "4M"]
    for budget in ["2M", "4M"]:
        evo_acc, evo_macs = BEST[(budget, "evolution")]
        rnd_acc, rnd_macs = BEST[(budget, "random")]
        row = table.loc[budget]
        assert row["evolution evals"] == row["random evals"] == POP * GENERATIONS
        assert row["evolution best (%)"] == round(evo_acc, 2)
        assert row["random best (%)"] == round(rnd_acc, 2)
        assert row["evolution best MACs (M)"] == round(evo_macs / 1e6, 2)
        assert row["random best MACs (M)"] == round(rnd_macs / 1e6, 2)
        assert row["difference (pp)"] == round(evo_acc - rnd_acc, 2)
    assert table.loc["4M", "difference (pp)"] < 0  # random may win; the sign must survive


def test_detection_table_keeps_nulls(out):
    table = pd.read_csv(out / "tables" / "detection.csv").set_index("model")
    assert list(table.columns) == ["kind", "budget", "AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert table.loc["evo-4M", "AP50"] == round(COCO["evo-4M"]["AP50"], 2)
    assert table.loc["deit-4M", "kind"] == "deit"
    assert np.isnan(table.loc["deit-2M", "APs"])
    assert "n/a" in (out / "tables" / "detection.md").read_text()


@pytest.mark.parametrize("name", ["models", "search_vs_random", "detection"])
def test_markdown_and_latex(out, name):
    md = (out / "tables" / f"{name}.md").read_text().splitlines()
    assert md[0].startswith("Table: ") and md[1] == ""
    assert md[2].startswith("| ") and md[3].startswith("|:")  # header and its rule
    tex = (out / "tables" / f"{name}.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\caption{" in tex
    assert "(%)" not in tex  # % would start a LaTeX comment


def test_macs_convention_is_stated(out):
    md = (out / "tables" / "models.md").read_text()
    assert report.MACS_CONVENTION in md
    assert "QK\\textasciicircum{}T" in (out / "tables" / "models.tex").read_text()


@pytest.mark.parametrize("name", ["pareto", "search_progress"])
def test_figures_written(out, name):
    png = (out / "figures" / f"{name}.png").read_bytes()
    pdf = (out / "figures" / f"{name}.pdf").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000


def test_no_temporary_files_left(out):
    leftovers = [p for p in out.rglob(".*") if p.is_file()]
    assert leftovers == []


def test_pareto_front_by_hand():
    df = pd.DataFrame({"macs": [5, 1, 3, 3, 2, 4, 6, 2],
                       "accuracy": [80, 50, 70, 60, 50, 70, 79, 65]})
    front = pareto_front(df)
    # (1,50) -> (2,65) -> (3,70) -> (5,80); (2,50), (3,60), (4,70) and (6,79) are beaten.
    assert list(front.index) == [1, 7, 2, 0]
    assert list(front["macs"]) == [1, 2, 3, 5] and list(front["accuracy"]) == [50, 65, 70, 80]


def test_pareto_front_keeps_one_of_duplicates_and_other_columns():
    df = pd.DataFrame({"x": [1.0, 1.0, 2.0], "y": [3.0, 3.0, np.nan], "arch": ["a", "b", "c"]})
    front = pareto_front(df, x="x", y="y")
    assert list(front["arch"]) == ["a"]


def test_best_so_far_is_monotone_and_ends_at_the_best(out):
    histories = report.load_histories(out, BUDGETS)
    progress = report.best_so_far(histories)
    for (budget, method), group in progress.groupby(["budget", "method"]):
        assert group["best so far"].is_monotonic_increasing
        assert list(group["generation"]) == list(range(GENERATIONS))
        assert group["best so far"].iloc[-1] == BEST[(budget, method)][0]


def test_gigamacs_column_when_models_are_large():
    metrics = pd.DataFrame([dict(model="evo-1.3G", kind="evo", budget="1.3G", top1=80.0,
                                 params=20_000_000, macs=1_254_000_000, throughput=10.0,
                                 throughput_device="cpu")])
    table = report.models_table(metrics)
    assert table["MACs (G)"].round(2).tolist() == [1.25]


@pytest.mark.parametrize("path, rule", [
    ("search/2M/history.csv", "search"),
    ("search/4M/random_history.csv", "random_search"),
    ("retrain/evo-4M/metrics.json", "retrain"),
    ("transfer/deit-2M/coco_eval.json", "transfer"),
])
def test_missing_input_names_file_and_rule(tmp_path, path, rule):
    root = write_inputs(tmp_path)
    (root / path).unlink()
    with pytest.raises(FileNotFoundError, match=f"{path}.*'{rule}' rule"):
        make_report(root, BUDGETS, MODELS)
    assert not (root / "tables").exists()  # everything is read before anything is written


def test_unknown_figure_format(tmp_path):
    with pytest.raises(ValueError, match="bmpx"):
        make_report(write_inputs(tmp_path), BUDGETS, MODELS, formats=("png", "bmpx"))


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")

    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
