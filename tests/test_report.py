"""The report stage: tables read back from disk, figures on disk, the Pareto helper, missing inputs.

Inputs are synthetic, written under tmp_path in the pipeline's layout (<space>/seed<s>/ chains and
<space>/ablation/, spelt out here rather than taken from vitnas.results), with planted values the
tables must show exactly."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from vitnas import results, space_tables, tables
from vitnas.errors import ConfigError
from vitnas.io import atomic_path
from vitnas.report import make_replicates_report, make_report
from vitnas.space_tables import pareto_front

REPO_CONFIG = REPO / "config" / "config.yaml"  # the default: the vit space with the 2M budget
SPACE = "vit"  # the space whose folder holds the inputs, under the experiment's folder
BUDGETS = ["4M", "2M"]  # deliberately not in MACs order: tables must sort them
SUPERNETS = ["4M", "2M"]
MODELS = ["deit-4M", "evo-2M", "evo-4M", "deit-2M"]
SEEDS = [0, 1, 2]
SEED = 0  # the default run's seed
POP, GENERATIONS = 4, 3
VARIANTS = ["full", "no_private_qk", "depth_sampling", "autoformer"]
BOOTSTRAP = 200
WINDOWS = {"2M": "[1.8M, 2M]", "4M": "[3.6M, 4M]"}

# The planted best candidate per (budget, method), per seed: (accuracy, accuracy_se, macs). Every
# other candidate scores lower. Evolution - random: 2M +2, +2.5, +3; 4M -1, -1.25, -1.5.
BEST = {("2M", "evolution"): [(81.257, 0.123, 1_900_000), (81.757, 0.2, 1_910_000), (82.257, 0.2, 1_920_000)],
        ("2M", "random"): [(79.257, 0.456, 1_850_000)] * 3,
        ("4M", "evolution"): [(84.0, 0.11, 3_800_000)] * 3,
        ("4M", "random"): [(85.0, 0.1, 3_990_000), (85.25, 0.1, 3_990_000), (85.5, 0.1, 3_990_000)]}

METRICS = {  # what every seed shares; top-1 and MACs of the searched models vary by seed
    "evo-2M": dict(kind="evo", budget="2M", params=1_234_567, throughput=5012.34, latency_torch_ms=0.61234,
                   latency_ort_ms=0.2),
    "deit-2M": dict(kind="deit", budget="2M", params=1_500_000, throughput=4800.0, latency_torch_ms=0.7,
                    latency_ort_ms=0.25),
    "evo-4M": dict(kind="evo", budget="4M", params=2_345_678, throughput=3100.0, latency_torch_ms=1.1,
                   latency_ort_ms=0.4),
    "deit-4M": dict(kind="deit", budget="4M", params=2_900_000, throughput=2950.5, latency_torch_ms=1.2,
                    latency_ort_ms=0.45),
}
# Per model, per seed. evo - deit top-1: 2M +2, +3, +4 (reproduced); 4M +1, -1, +0.5 (inconclusive).
TOP1 = {"evo-2M": [88.123, 89.123, 90.123], "deit-2M": [86.123] * 3,
        "evo-4M": [90.0, 89.0, 90.5], "deit-4M": [89.0, 90.0, 90.0]}
MACS = {"evo-2M": [1_951_234, 1_960_000, 1_940_000], "deit-2M": [1_999_999] * 3,
        "evo-4M": [3_876_543] * 3, "deit-4M": [3_990_000] * 3}
# The searched networks with inherited weights, untrained (export), per seed. inherited - scratch
# evo: 2M -0.3, -0.2, -0.4 (match: interval above -1 pp); 4M -5, -4, -5.5 (not reproduced).
INHERITED_TOP1 = {"2M": [87.823, 88.923, 89.723], "4M": [85.0, 85.0, 85.0]}
# COCO box AP per seed. evo - deit: 2M +2, +3, +4; 4M -0.5, +1, -1.
AP = {"evo-2M": [12.0, 13.0, 14.0], "deit-2M": [10.0] * 3,
      "evo-4M": [11.0] * 3, "deit-4M": [11.5, 10.0, 12.0]}


def _history(budget: str, method: str, seed: int, rng) -> pd.DataFrame:
    n = POP * GENERATIONS
    budget_macs = float(budget[:-1]) * 1e6
    best_acc, best_se, best_macs = BEST[(budget, method)][seed]
    accuracy = rng.uniform(50, 70, n)
    macs = rng.integers(int(0.9 * budget_macs), int(budget_macs), n)
    accuracy[n - 2], macs[n - 2] = best_acc, best_macs  # in the last generation
    se = np.full(n, 0.5)
    se[n - 2] = best_se
    return pd.DataFrame({
        "method": method, "generation": np.arange(n) // POP, "eval_index": np.arange(n),
        "arch": '{"patch": 4}', "macs": macs, "params": macs // 2, "accuracy": accuracy,
        "accuracy_se": se, "eval_images": 1000, "budget": budget, "budget_macs": budget_macs,
        "window_lo": 0.9 * budget_macs, "window_hi": budget_macs,
    })


def _write_json(path, record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))  # allow_nan: the pipeline writes JSON NaN too


def _scope(tau, tau_ci, rho, rho_ci, n, ceiling_tau, ceiling_ci) -> dict:
    ceiling = {"kendall_tau": ceiling_tau, "kendall_tau_ci": ceiling_ci, "spearman_rho": ceiling_tau,
               "spearman_rho_ci": ceiling_ci, "seeds": ["seed0", "seed1"], "n_archs": n}
    return {"kendall_tau": tau, "kendall_tau_ci": tau_ci, "spearman_rho": rho, "spearman_rho_ci": rho_ci,
            "n_archs": n, "ceiling": ceiling}


# Per supernet: planted ranking scopes and layer usage.
SUPERNET_SCOPES = {
    "2M": {"all": _scope(0.61234, [0.4012, 0.7987], 0.75, [0.6, 0.9], 20, 0.8, [0.7, 0.9]),
           "window": _scope(0.5, [0.1, 0.8], 0.6, [0.2, 0.9], 10, 0.7, [0.5, 0.85])},
    "4M": {"all": _scope(0.3, [0.1, 0.5], 0.4, [0.2, 0.6], 20, math.nan, [math.nan, math.nan])},
}
LAYER_ACTIVE = {"2M": [1.0, 0.5, 0.0123], "4M": [1.0, 0.9]}
USAGE_WARNINGS = {"2M": ["layer 2 was active in 1.23 % of steps", "another"], "4M": []}


def _archs(inherited, standalone, order=None) -> list[dict]:
    order = range(len(standalone)) if order is None else order
    return [{"index": i, "budget": "2M", "macs": 1_900_000, "inherited_accuracy": float(inherited[i]),
             "standalone_accuracy": float(standalone[i])} for i in order]


STANDALONE = np.arange(60.0, 70.0)  # ten reference architectures
# Inherited accuracies per ablation arm: full and no_private_qk rank perfectly (tau 1), AutoFormer
# exactly backwards (tau -1); no_private_qk lists its archs in another order, plus one full lacks.
ARM_INHERITED = {"full": STANDALONE - 10, "no_private_qk": STANDALONE - 20,
                 "depth_sampling": STANDALONE - 5, "autoformer": STANDALONE[::-1] - 10}
ARM_TAU = {"full": 1.0, "no_private_qk": 1.0, "depth_sampling": 1.0, "autoformer": -1.0}
ARMS = {
    "full": dict(private_tokens=True, private_qk=True, sharing="cyclic", identity_shifting=True,
                 sampling="layerwise", identity_prob="budget", recipe="weak", drop_path=0.0),
    "autoformer": dict(private_tokens=False, private_qk=False, sharing="prefix", identity_shifting=True,
                       sampling="depth", identity_prob=0.5, recipe="weak", drop_path=0.0),
}
ARMS["no_private_qk"] = ARMS["full"] | {"private_qk": False}
ARMS["depth_sampling"] = ARMS["full"] | {"sampling": "depth"}


def _ablation_ranking(variant: str) -> dict:
    tau = ARM_TAU[variant]
    archs = _archs(ARM_INHERITED[variant], STANDALONE)
    if variant == "no_private_qk":
        archs = _archs(ARM_INHERITED[variant], STANDALONE, order=[3, 1, 0, 2, 9, 8, 7, 6, 5, 4])
        archs.append({"index": 99, "budget": "4M", "macs": 3_900_000, "inherited_accuracy": 1.0,
                      "standalone_accuracy": 50.0})
    return {"variant": variant, "budget": "2M", "n_archs": len(archs), "held_out_images": 500,
            "scopes": {"all": _scope(tau, [tau - 0.1, min(tau + 0.1, 1.0)], tau, [tau - 0.1, tau], 10,
                                     0.9, [0.8, 0.95])},
            "archs": archs}


def _usage(layer_active) -> dict:
    return {"steps": 100, "layer_active": layer_active, "choices": {"embed_dim": {"64": 1.0}},
            "min_layer_activity": 0.05}


def write_chain(chain, seed: int, rng) -> None:
    for budget in BUDGETS:
        folder = chain / "search" / budget
        folder.mkdir(parents=True)
        _history(budget, "evolution", seed, rng).to_csv(folder / "history.csv", index=False)
        _history(budget, "random", seed, rng).to_csv(folder / "random_history.csv", index=False)
    for model, m in METRICS.items():
        _write_json(chain / "retrain" / model / "metrics.json", dict(
            model=model, **m, top1=TOP1[model][seed], macs=MACS[model][seed],
            throughput_device="cpu (2 threads)", epochs=3, train_seconds=12.5, test_images=1000,
            arch={"patch": 4}))
        _write_json(chain / "transfer" / model / "coco_eval.json", dict(
            model=model, detector="retinanet", steps=50, AP=AP[model][seed], AP50=20.123, AP75=9.5,
            APs=None if model == "deit-2M" else 1.25, APm=8.0, APl=15.0))
    for budget in BUDGETS:
        evo = METRICS[f"evo-{budget}"]
        _write_json(chain / "export" / budget / "metrics.json", dict(
            model=f"inh-{budget}", kind="inh", budget=budget, top1=INHERITED_TOP1[budget][seed],
            params=evo["params"], macs=MACS[f"evo-{budget}"][seed], throughput=1000.0,
            latency_torch_ms=evo["latency_torch_ms"], latency_ort_ms=evo["latency_ort_ms"],
            throughput_device="cpu (2 threads)", init="inherited", train_steps=0, test_images=1000,
            arch={"patch": 4}))
    for sn in SUPERNETS:
        folder = chain / "supernet" / sn
        _write_json(folder / "health.json", dict(
            budget=sn, smallest=50.0, largest=70.0, random_mean=60.0, random_std=3.0, random_min=55.0,
            random_max=66.0, n_random=10, held_out_images=500, usage=_usage(LAYER_ACTIVE[sn]),
            warnings=USAGE_WARNINGS[sn]))
        _write_json(folder / "ranking.json", dict(
            budget=sn, n_archs=20, held_out_images=500, scopes=SUPERNET_SCOPES[sn],
            archs=_archs(STANDALONE, STANDALONE)))


def write_ablation(root) -> None:
    for i, v in enumerate(VARIANTS):
        folder = root / "ablation" / v
        _write_json(folder / "health.json", dict(
            variant=v, arm=ARMS[v] | {"mixup": 0.0, "cutmix": 1.0, "randaugment": "-", "random_erasing": 0.25},
            smallest=50.0, largest=70.0, random_mean=70.0 - i, random_std=2.0, loss_spikes=i, loss_nans=0,
            final_loss=1.0, steps=100, budget="2M", usage=_usage([1.0, 0.5])))
        _write_json(folder / "ranking.json", _ablation_ranking(v))
        _write_json(folder / "search.json", dict(
            variant=v, budget="2M", window=[1.8e6, 2e6], accuracy=71.0 + i, accuracy_se=0.3,
            macs=1.9e6, params=1e6, evaluations=40))


def write_inputs(root, seeds=SEEDS, ablation=True):
    """The inputs under the experiment's folder `root` (in its SPACE folder); returns `root`."""
    rng = np.random.default_rng(0)
    for seed in seeds:
        write_chain(root / SPACE / f"seed{seed}", seed, rng)
    if ablation:
        write_ablation(root / SPACE)
    return root


def run_report(root, **kwargs):
    make_report(root, SPACE, BUDGETS, MODELS, SEED, SUPERNETS, **({"formats": ("png", "pdf"), "dpi": 60,
                "ablation_variants": VARIANTS, "bootstrap": BOOTSTRAP} | kwargs))


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """The space's folder, after the default report and the replicates report."""
    root = write_inputs(tmp_path_factory.mktemp("results"))
    run_report(root)
    make_replicates_report(root, SPACE, BUDGETS, MODELS, SEEDS, ablation_variants=VARIANTS, bootstrap=BOOTSTRAP)
    return root / SPACE


def test_models_table_values_and_order(out):
    table = pd.read_csv(out / "tables" / "models.csv")
    assert list(table["model"]) == ["evo-2M", "inh-2M", "deit-2M", "evo-4M", "inh-4M", "deit-4M"]
    assert list(table["window"]) == ["[1.8M, 2M]"] * 3 + ["[3.6M, 4M]"] * 3
    evo_of = lambda m: m.replace("inh-", "evo-")  # an export has its searched network's size
    assert list(table["MACs (M)"]) == [round(MACS[evo_of(m)][SEED] / 1e6, 2) for m in table["model"]]
    assert list(table["params (M)"]) == [round(METRICS[evo_of(m)]["params"] / 1e6, 2) for m in table["model"]]
    top1 = [INHERITED_TOP1[m[4:]][SEED] if m.startswith("inh-") else TOP1[m][SEED] for m in table["model"]]
    assert list(table["top-1 (%)"]) == [round(t, 2) for t in top1]
    assert list(table["weights"]) == ["trained from scratch", "inherited, untrained", "trained from scratch"] * 2
    assert table.loc[0, "throughput (img/s)"] == 5012.3
    assert set(table["throughput device"]) == {"cpu (2 threads)"}
    # batch-1 latency beside MACs, at 3 decimals (sub-millisecond on the default's models)
    assert list(table.columns[table.columns.get_loc("MACs (M)") + 1:][:2]) == ["latency torch (ms)",
                                                                                "latency ORT (ms)"]
    assert table.loc[0, "latency torch (ms)"] == 0.612 and table.loc[0, "latency ORT (ms)"] == 0.2


def test_search_vs_random_table(out):
    table = pd.read_csv(out / "tables" / "search_vs_random.csv").set_index("budget")
    assert list(table.index) == ["2M", "4M"]
    for budget in ["2M", "4M"]:
        evo_acc, evo_se, evo_macs = BEST[(budget, "evolution")][SEED]
        rnd_acc, rnd_se, rnd_macs = BEST[(budget, "random")][SEED]
        row = table.loc[budget]
        assert row["window"] == WINDOWS[budget]
        assert row["evolution evals"] == row["random evals"] == POP * GENERATIONS
        assert row["evolution best (%)"] == round(evo_acc, 2)
        assert row["random best (%)"] == round(rnd_acc, 2)
        assert row["evolution SE (pp)"] == round(evo_se, 2) and row["random SE (pp)"] == round(rnd_se, 2)
        assert row["evolution best MACs (M)"] == round(evo_macs / 1e6, 2)
        assert row["random best MACs (M)"] == round(rnd_macs / 1e6, 2)
        assert row["difference (pp)"] == round(evo_acc - rnd_acc, 2)
    assert table.loc["4M", "difference (pp)"] < 0  # random may win; the sign must survive


def test_detection_table_keeps_nulls(out):
    table = pd.read_csv(out / "tables" / "detection.csv").set_index("model")
    assert list(table.columns) == ["kind", "budget", "window", "AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert table.loc["evo-4M", "AP50"] == 20.12 and table.loc["evo-4M", "AP"] == AP["evo-4M"][SEED]
    assert table.loc["deit-4M", "kind"] == "deit" and table.loc["deit-4M", "window"] == "[3.6M, 4M]"
    assert np.isnan(table.loc["deit-2M", "APs"])
    assert "n/a" in (out / "tables" / "detection.md").read_text()


def test_ranking_table(out):
    table = pd.read_csv(out / "tables" / "ranking.csv")  # "n/a" reads back as NaN
    assert list(zip(table["supernet"].astype(str), table["scope"])) == [("2M", "all"), ("2M", "window"),
                                                                        ("4M", "all")]
    first = table.iloc[0]
    assert first["window"] == "[1.8M, 2M]" and first["archs"] == 20
    assert first["Kendall tau"] == 0.612 and first["tau CI"] == "[0.401, 0.799]"
    assert first["Spearman rho"] == 0.75 and first["rho CI"] == "[0.600, 0.900]"
    assert first["ceiling tau"] == 0.8 and first["ceiling CI"] == "[0.700, 0.900]"
    assert first["min layer active (%)"] == 1.2 and first["usage warnings"] == 2
    assert table.iloc[1]["archs"] == 10 and table.iloc[1]["tau CI"] == "[0.100, 0.800]"
    last = table.iloc[2]  # one stand-alone seed: no ceiling
    assert np.isnan(last["ceiling tau"]) and pd.isna(last["ceiling CI"])
    assert last["min layer active (%)"] == 90.0 and last["usage warnings"] == 0
    assert "percentile-bootstrap" in (out / "tables" / "ranking.md").read_text().splitlines()[0]


def test_ablation_table(out):
    table = pd.read_csv(out / "tables" / "ablation.csv",
                        dtype={"identity prob": str, "drop path": str}).set_index("variant")
    assert list(table.index) == VARIANTS
    assert list(table.columns[:8]) == ["sharing", "private tokens", "private Q/K", "identity shifting",
                                       "sampling", "identity prob", "recipe", "drop path"]
    auto, full = table.loc["autoformer"], table.loc["full"]
    assert (auto["sharing"], auto["private tokens"], auto["identity prob"]) == ("prefix", "no", "0.5")
    assert (full["sharing"], full["private Q/K"], full["identity prob"], full["drop path"]) == \
        ("cyclic", "yes", "budget", "0")
    assert full["Kendall tau"] == 1.0 and auto["Kendall tau"] == -1.0
    assert auto["tau CI"] == "[-1.100, -0.900]" and auto["ceiling tau"] == 0.9
    assert full["random mean (%)"] == 70.0 and auto["random mean (%)"] == 67.0
    # tau(arm) - tau(full), paired on the same archs: -2 in every resample; no_private_qk ranks as well
    # as full on the ten archs they share (its extra arch is ignored).
    assert auto["tau - tau(full)"] == -2.0 and auto["tau - tau(full) CI"] == "[-2.000, -2.000]"
    assert table.loc["no_private_qk", "tau - tau(full)"] == 0.0
    assert np.isnan(full["tau - tau(full)"]) and pd.isna(full["tau - tau(full) CI"])
    assert auto["search best (%)"] == 74.0 and auto["search MACs (M)"] == 1.9
    md = (out / "tables" / "ablation.md").read_text()
    assert "paired-bootstrap 95 % interval" in md and "[1.8M, 2M]" in md


def test_claims_tables_written(out):
    claims = pd.read_csv(out / "tables" / "claims.csv")
    assert list(claims.columns) == ["claim", "scope", "measure", "n", "difference", "sd", "ci_lo", "ci_hi",
                                    "interval", "verdict", "window"]
    seed_rows = claims[claims["interval"].str.startswith("1 seed")]
    assert len(seed_rows) == 8 and set(seed_rows["verdict"]) == {"inconclusive"}  # one seed: no interval
    assert seed_rows["sd"].isna().all() and (seed_rows["n"] == 1).all()
    html = (out / "tables" / "claims.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<table" in html and "paired bootstrap, 10 archs" in html
    replicated = pd.read_csv(out / "replicates" / "tables" / "claims.csv")
    # (the inherited rows add the training compute after the interval's kind)
    assert {i.split(";")[0] for i in replicated.loc[replicated["interval"].str.startswith("t, "), "interval"]} == \
        {"t, 3 seeds"}
    assert (out / "replicates" / "tables" / "claims.html").is_file()


def test_replicates_table(out):
    table = pd.read_csv(out / "replicates" / "tables" / "replicates.csv").set_index("model")
    assert list(table.index) == ["evo-2M", "deit-2M", "evo-4M", "deit-4M"]
    evo = table.loc["evo-2M"]
    assert evo["seeds"] == 3 and evo["window"] == "[1.8M, 2M]"
    assert evo["top-1 mean (%)"] == 89.12 and evo["top-1 SD (pp)"] == 1.0
    assert evo["top-1 CI (%)"] == "[86.64, 91.61]"  # 89.123 -+ 4.303 * 1 / sqrt(3)
    assert evo["AP mean"] == 13.0 and evo["AP SD"] == 1.0 and evo["AP CI"] == "[10.52, 15.48]"
    assert evo["MACs (M)"] == round(np.mean(MACS["evo-2M"]) / 1e6, 2)
    deit = table.loc["deit-2M"]
    assert deit["top-1 SD (pp)"] == 0.0 and deit["top-1 CI (%)"] == "[86.12, 86.12]"
    md = (out / "replicates" / "tables" / "replicates.md").read_text()
    assert "t-interval" in md.splitlines()[0] and "0, 1, 2" in md.splitlines()[0]


ALL_TABLES = ["models", "search_vs_random", "detection", "ranking", "claims", "ablation"]


@pytest.mark.parametrize("name", ALL_TABLES + ["replicates/tables/replicates", "replicates/tables/claims"])
def test_markdown_and_latex(out, name):
    stem = out / (name if "/" in name else f"tables/{name}")
    md = stem.with_suffix(".md").read_text().splitlines()
    assert md[0].startswith("Table: ") and md[1] == ""
    assert md[2].startswith("| ") and md[3].startswith("|:")  # header and its rule
    tex = stem.with_suffix(".tex").read_text()
    assert "\\begin{tabular}" in tex and "\\caption{" in tex
    assert all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule"))  # booktabs
    assert "(%)" not in tex and "95 %" not in tex  # % would start a LaTeX comment
    page = stem.with_suffix(".html").read_text()  # the same table for Snakemake's report
    assert page.startswith("<!DOCTYPE html>") and md[0][len("Table: "):][:40] in page
    assert page.count("<tr") == len(pd.read_csv(stem.with_suffix(".csv"))) + 1


def test_macs_convention_is_stated(out):
    md = (out / "tables" / "models.md").read_text()
    assert tables.MACS_CONVENTION in md
    assert "QK\\textasciicircum{}T" in (out / "tables" / "models.tex").read_text()


@pytest.mark.parametrize("name", ["pareto", "search_progress", "ablation_tau"])
def test_figures_written(out, name):
    png = (out / "figures" / f"{name}.png").read_bytes()
    pdf = (out / "figures" / f"{name}.pdf").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000


def test_ablation_figure_shows_intervals_and_ceiling(out):
    ablation = results.load_ablation(out.parent, SPACE, VARIANTS)
    ax = space_tables.ablation_tau_figure(ablation).axes[0]
    assert any("ceiling" in t.get_text() for t in ax.get_legend().get_texts())
    assert any("interval" in t.get_text() for t in ax.get_legend().get_texts())
    assert [round(line.get_ydata()[0], 3) for line in ax.get_lines() if line.get_linestyle() == ":"] == [0.9]


def test_one_reference_seed_draws_no_ceiling():
    """The default run trains one reference seed (no ceiling): every ceiling NaN draws no line,
    one shared value one line, differing values a line per bar."""
    import matplotlib.figure

    def dotted(ceilings):
        ax = matplotlib.figure.Figure().subplots()
        space_tables._draw_ceiling(ax, np.arange(len(ceilings)), pd.Series(ceilings, dtype=float))
        return len([line for line in ax.get_lines() if line.get_linestyle() == ":"]), len(ax.collections)

    assert dotted([np.nan, np.nan, np.nan]) == (0, 0)
    assert dotted([0.5, 0.5, np.nan]) == (1, 0)
    assert dotted([0.5, 0.7, np.nan]) == (0, 1)


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
    histories = results.load_histories(out.parent, SPACE, SEED, BUDGETS)
    progress = space_tables.best_so_far(histories)
    for (budget, method), group in progress.groupby(["budget", "method"]):
        assert group["best so far"].is_monotonic_increasing
        assert list(group["generation"]) == list(range(GENERATIONS))
        assert group["best so far"].iloc[-1] == BEST[(budget, method)][SEED][0]


def test_gigamacs_column_when_models_are_large():
    metrics = pd.DataFrame([dict(model="evo-1.3G", kind="evo", budget="1.3G", top1=80.0,
                                 params=20_000_000, macs=1_254_000_000, throughput=10.0,
                                 throughput_device="cpu", latency_torch_ms=90.0, latency_ort_ms=40.0)])
    table = space_tables.models_table(metrics, {"1.3G": "[1.17G, 1.3G]"})
    assert table["MACs (G)"].round(2).tolist() == [1.25] and table["window"].tolist() == ["[1.17G, 1.3G]"]


def test_shared_supernet_comes_last_and_has_no_window(tmp_path):
    chain = tmp_path / SPACE / "seed0"
    for sn in ["shared", "2M"]:
        _write_json(chain / "supernet" / sn / "health.json", dict(budget=sn, usage=_usage([0.5]), warnings=[]))
        _write_json(chain / "supernet" / sn / "ranking.json", dict(scopes=SUPERNET_SCOPES["4M"], archs=[]))
    table = space_tables.ranking_table(results.load_supernets(tmp_path, SPACE, 0, ["shared", "2M"]), WINDOWS)
    assert list(table["supernet"]) == ["2M", "shared"] and list(table["window"]) == ["[1.8M, 2M]", "all budgets"]


@pytest.mark.parametrize("path, rule", [
    ("seed0/search/2M/history.csv", "search"),
    ("seed0/search/4M/random_history.csv", "random_search"),
    ("seed0/retrain/evo-4M/metrics.json", "retrain"),
    ("seed0/transfer/deit-2M/coco_eval.json", "transfer"),
    ("seed0/supernet/2M/health.json", "train_supernet"),
    ("seed0/supernet/4M/ranking.json", "ranking"),
    ("ablation/no_private_qk/health.json", "ablation_supernet"),
    ("ablation/autoformer/ranking.json", "ablation_ranking"),
    ("ablation/full/search.json", "ablation_search"),
])
def test_missing_input_names_file_and_rule(tmp_path, path, rule):
    root = write_inputs(tmp_path, seeds=[SEED])
    (root / SPACE / path).unlink()
    with pytest.raises(FileNotFoundError, match=f"{SPACE}/{path} is missing.*'{rule}' rule"):
        run_report(root, formats=("png",))
    assert not (root / SPACE / "tables").exists()  # everything is read before anything is written
    assert not (root / SPACE / "figures").exists()


def test_replicates_missing_seed_fails_before_writing(tmp_path):
    root = write_inputs(tmp_path, ablation=False)
    (root / SPACE / "seed2/retrain/deit-4M/metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="seed2/retrain/deit-4M/metrics.json.*'retrain' rule"):
        make_replicates_report(root, SPACE, BUDGETS, MODELS, SEEDS)
    assert not (root / SPACE / "replicates").exists()


def test_report_without_ablation(tmp_path):
    root = write_inputs(tmp_path, seeds=[SEED], ablation=False)
    run_report(root, formats=("png",), ablation_variants=())
    assert not (root / SPACE / "tables" / "ablation.csv").exists()
    # seed-level claims (inherited too: untrained and, without an ft model, an empty fine-tuned row) only
    assert len(pd.read_csv(root / SPACE / "tables" / "claims.csv")) == 10


def test_unknown_figure_format(tmp_path):
    with pytest.raises(ConfigError, match="figures.formats: bmpx not supported; choose from .*png"):
        run_report(write_inputs(tmp_path, seeds=[SEED]), formats=("png", "bmpx"))
    assert not (tmp_path / SPACE / "tables").exists()


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")

    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_replicates_report_carries_the_ablation_table(out):
    """The replicates target runs the ablation even when the default run leaves it out: its table
    and figure go beside the replicate tables, equal to the default report's."""
    same = pd.read_csv(out / "replicates" / "tables" / "ablation.csv")
    pd.testing.assert_frame_equal(same, pd.read_csv(out / "tables" / "ablation.csv"))
    assert (out / "replicates" / "figures" / "ablation_tau.png").stat().st_size > 1000


def test_cli_figures_reads_and_writes_where_the_rules_do(tmp_path, monkeypatch, capsys):
    """`vitnas figures --config ...`, as the rule runs it: under results/<experiment>/ of the working
    directory (vitnas.results), in the config's space; --results names another folder."""
    from vitnas import cli

    monkeypatch.chdir(tmp_path)
    root = write_inputs(tmp_path / "results" / "default", seeds=[SEED], ablation=False)
    config = [str(REPO_CONFIG), '{"figures": {"formats": ["png"], "dpi": 50}}']
    assert cli.main(["figures", "--space", SPACE, "--config", *config]) == 0
    assert "tables in results/default/vit/tables, figures in results/default/vit/figures" in capsys.readouterr().out
    assert list(pd.read_csv(root / SPACE / "tables" / "models.csv")["model"]) == ["evo-2M", "inh-2M", "deit-2M"]
    assert (root / SPACE / "figures" / "pareto.png").is_file() and not (root / "tables").exists()
    assert cli.main(["figures", "--results", str(tmp_path / "elsewhere"), "--space", SPACE, "--config", *config]) == 1
    assert "elsewhere/vit/seed0/search/2M/history.csv is missing" in capsys.readouterr().err


def test_families_report_reads_every_space_and_writes_beside_them(tmp_path):
    from vitnas.report import make_families_report

    root = write_inputs(tmp_path, seeds=[SEED], ablation=False)
    table = make_families_report(root, {SPACE: ("vit", MODELS, BUDGETS)}, SEED, ("png",), 50)
    written = pd.read_csv(root / "tables" / "families.csv")
    assert list(written["model"]) == list(table["model"]) == ["evo-2M", "inh-2M", "deit-2M", "evo-4M", "inh-4M",
                                                              "deit-4M"]
    retrained = written[~written["model"].str.startswith("inh-")]
    assert list(retrained["box AP (%)"]) == [AP[m][SEED] for m in retrained["model"]]
    inherited = written.set_index("model").loc[["inh-2M", "inh-4M"]]
    assert list(inherited["top-1 (%)"]) == [round(INHERITED_TOP1[b][SEED], 2) for b in ("2M", "4M")]
    assert inherited["box AP (%)"].isna().all()  # no detector on an untrained export
    assert all((root / "figures" / f"families_{x}.png").is_file() for x in ("macs", "throughput", "latency", "detection"))
    assert list(retrained["latency torch (ms)"]) == [0.612, 0.7, 1.1, 1.2]


def test_families_latency_figure_has_searched_inherited_and_hand_designed():
    """Top-1 against batch-1 latency: a marker per kind, the exports drawn but off the retrained line."""
    from vitnas.compare import families_figure

    df = pd.DataFrame({"space": "vit", "model": ["evo-2M", "inh-2M", "deit-2M"], "kind": ["evo", "inh", "deit"],
                       "latency_torch_ms": [0.6, 0.61, 0.7], "top1": [88.0, 80.0, 86.0]})
    (ax, *_) = families_figure(df, "latency_torch_ms", "top1", "latency", "top-1").axes
    points = {tuple(xy) for c in ax.collections for xy in c.get_offsets()}
    assert points == {(0.6, 88.0), (0.61, 80.0), (0.7, 86.0)}
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"searched", "inherited (untrained)",
                                                                   "hand-designed"}
    (line,) = [line for line in ax.get_lines() if len(line.get_xdata())]  # seaborn's legend proxies are empty
    assert list(line.get_xdata()) == [0.6, 0.7]
