"""The claims table: per claim and scope a difference, its 95 % interval and a verdict, from
synthetic results with planted differences (the layout and values of test_report), loaded by
vitnas.results as the report loads them."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from vitnas import claims, results
from vitnas.families.vit import CLAIMS as ARMS_CLAIMS
from vitnas.claims import claims_table, write_claims

from test_report import BUDGETS, MODELS, SEEDS, SPACE, STANDALONE, VARIANTS, _archs, write_inputs

T2 = 4.302653  # Student t, 97.5 % quantile, 2 degrees of freedom (three seeds), to six decimals


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("results"))


def claims_of(root, seeds, variants, bootstrap: int) -> pd.DataFrame:
    """The claims table of the results under `root`: every seed's chain and the ablation, loaded once."""
    chains = [results.load_chain(root, SPACE, seed, BUDGETS, MODELS) for seed in seeds]
    return claims_table(chains, BUDGETS, results.load_ablation(root, SPACE, variants), bootstrap)


@pytest.fixture(scope="module")
def table(root):
    return claims_of(root, SEEDS, VARIANTS, bootstrap=200)


FULL_VS_AUTOFORMER = ARMS_CLAIMS["autoformer"][0]
EACH_TECHNIQUE = ARMS_CLAIMS["no_private_qk"][0]
SEARCHED_BEATS_BASELINE = claims.SEED_CLAIMS[0][0].format(baseline="DeiT-style")


def _row(table, claim, scope, measure=None) -> pd.Series:
    rows = table[(table["claim"] == claim) & (table["scope"] == scope)]
    if claim == claims.INHERITED_CLAIM[0]:  # two rows per scope: untrained (default), fine-tuned
        rows = rows[rows["measure"] == (measure or claims.INHERITED_CLAIM[2])]
    assert len(rows) == 1
    return rows.iloc[0]


def test_columns_and_row_order(table):
    assert list(table.columns) == claims.COLUMNS
    seed_claims = [c.format(baseline="DeiT-style") for c, _, _ in claims.SEED_CLAIMS]
    assert list(zip(table["claim"], table["scope"])) == (
        [(c, b) for c in seed_claims for b in ["2M", "4M"]]  # budgets in MACs order
        + [(claims.INHERITED_CLAIM[0], b) for b in ["2M", "2M", "4M", "4M"]]  # untrained, fine-tuned
        + [(FULL_VS_AUTOFORMER, "autoformer"), (EACH_TECHNIQUE, "no_private_qk")])
    assert "depth_sampling" not in set(table["scope"])  # not a paper claim


def test_searched_beats_baseline_over_three_seeds(table):
    row = _row(table, SEARCHED_BEATS_BASELINE, "2M")  # planted +2, +3, +4
    assert row["n"] == 3 and row["difference"] == pytest.approx(3.0) and row["sd"] == pytest.approx(1.0)
    half = T2 * 1.0 / math.sqrt(3)
    assert (row["ci_lo"], row["ci_hi"]) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert row["verdict"] == "reproduced" and row["interval"] == "t, 3 seeds"
    assert row["window"] == "[1.8M, 2M]"
    mixed = _row(table, SEARCHED_BEATS_BASELINE, "4M")  # planted +1, -1, +0.5
    assert mixed["difference"] == pytest.approx(0.5 / 3) and mixed["verdict"] == "inconclusive"
    assert mixed["window"] == "[3.6M, 4M]"


def test_search_and_detection_claims(table):
    evo = _row(table, claims.SEED_CLAIMS[1][0], "2M")  # +2, +2.5, +3
    assert evo["difference"] == pytest.approx(2.5) and evo["sd"] == pytest.approx(0.5)
    assert evo["verdict"] == "reproduced"
    rnd = _row(table, claims.SEED_CLAIMS[1][0], "4M")  # random wins every seed: -1, -1.25, -1.5
    assert rnd["difference"] == pytest.approx(-1.25)
    assert rnd["ci_hi"] == pytest.approx(-1.25 + T2 * 0.25 / math.sqrt(3))
    assert rnd["verdict"] == "not reproduced"
    assert _row(table, claims.SEED_CLAIMS[2][0], "2M")["verdict"] == "reproduced"  # AP +2, +3, +4
    assert _row(table, claims.SEED_CLAIMS[2][0], "4M")["verdict"] == "inconclusive"  # -0.5, +1, -1


def test_inherited_weights_match_scratch_over_three_seeds(table):
    """Planted inherited - scratch: 2M -0.3, -0.2, -0.4 (within the 1 pp margin), 4M -5, -4, -5.5."""
    close = _row(table, claims.INHERITED_CLAIM[0], "2M")
    assert close["n"] == 3 and close["difference"] == pytest.approx(-0.3) and close["sd"] == pytest.approx(0.1)
    half = T2 * 0.1 / math.sqrt(3)
    assert (close["ci_lo"], close["ci_hi"]) == (pytest.approx(-0.3 - half), pytest.approx(-0.3 + half))
    assert close["verdict"] == "reproduced"  # the whole interval above -1 pp, though below 0
    far = _row(table, claims.INHERITED_CLAIM[0], "4M")
    assert far["difference"] == pytest.approx(-29 / 6) and far["verdict"] == "not reproduced"


def test_fine_tuned_searched_networks_have_no_scratch_to_match():
    """With retrain.init: inherited the searched model was fine-tuned: no scratch side, no value."""
    metrics = pd.DataFrame({"model": ["evo-2M", "deit-2M"], "top1": [90.0, 85.0], "init": ["inherited", "scratch"]})
    inherited = pd.DataFrame({"model": ["inh-2M"], "top1": [88.0]})
    chain = results.Chain(0, pd.DataFrame(), metrics, pd.DataFrame(), {}, inherited)
    assert claims.inherited_differences(chain, ["2M"])["inherited"].isna().all()
    rows = claims.inherited_claim_rows(claims.inherited_differences(chain, ["2M"]), ["2M"],
                                       pd.DataFrame({"budget": ["2M"], "window": ["[1.8M, 2M]"]}))
    assert rows[0]["n"] == 0 and rows[0]["verdict"] == "inconclusive"
    assert rows[0]["interval"] == "retrain.init is inherited: no scratch model"


def test_one_seed_is_inconclusive(root):
    table = claims_of(root, [0], [], bootstrap=200)
    assert len(table) == 10  # no ablation: seed-level claims and the inherited-weights claim only
    tuned = table["measure"] == claims.FINETUNED_CLAIM[2]
    assert tuned.sum() == 2 and (table.loc[tuned, "n"] == 0).all()  # no ft model in the default run
    assert set(table.loc[tuned, "interval"]) == {"no ft model: `snakemake replicates` with retrain.compare_finetune"}
    table = table[~tuned]
    assert (table["n"] == 1).all() and table["sd"].isna().all() and table["ci_lo"].isna().all()
    assert set(table["verdict"]) == {"inconclusive"}
    # the inherited rows add the training compute (these records lack train_images: not recorded)
    assert {i.split(";")[0] for i in table["interval"]} == {"1 seed: run `snakemake replicates`"}
    assert _row(table, claims.INHERITED_CLAIM[0], "2M")["interval"] == (
        "1 seed: run `snakemake replicates`; training per seed: inherited 0, "
        "scratch not recorded (metrics.json predates train_images)")
    assert _row(table, SEARCHED_BEATS_BASELINE, "2M")["difference"] == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------- fine-tuned side

# Per seed: evo-<budget> from scratch and ft-<budget> fine-tuned from the export. ft - scratch:
# 2M -0.5, 0, -0.25 (mean -0.25, SD 0.25: the interval above -1 pp, reproduced); 4M -5, -4, -6
# (mean -5, SD 1: wholly below -1 pp, not reproduced). inherited - scratch: 2M -2 every seed.
FT_DIFF = {"2M": [-0.5, 0.0, -0.25], "4M": [-5.0, -4.0, -6.0]}
SCRATCH = {"train_steps": 453, "train_images": 453 * 128, "train_seconds": 95.0}
FINETUNE = {"train_steps": 136, "train_images": 136 * 128, "train_seconds": 31.0}
FT_MACS = {"2M": 2e6, "4M": 4e6}


def _ft_chain(seed: int) -> results.Chain:
    rows, inh = [], []
    for b in ["2M", "4M"]:
        scratch = 80.0 + seed
        rows += [{"model": f"evo-{b}", "kind": "evo", "budget": b, "top1": scratch, "macs": FT_MACS[b],
                  "init": "scratch", **SCRATCH},
                 {"model": f"ft-{b}", "kind": "ft", "budget": b, "top1": scratch + FT_DIFF[b][seed],
                  "macs": FT_MACS[b], "init": "inherited", **FINETUNE},
                 {"model": f"deit-{b}", "kind": "deit", "budget": b, "top1": 70.0, "macs": FT_MACS[b],
                  "init": "scratch", **SCRATCH}]
        inh.append({"model": f"inh-{b}", "top1": scratch - 2.0})
    return results.Chain(seed, pd.DataFrame(), pd.DataFrame(rows), pd.DataFrame(), {}, pd.DataFrame(inh))


def test_fine_tuned_side_over_three_seeds_with_each_paths_compute():
    per_seed = pd.concat([claims.inherited_differences(_ft_chain(s), ["2M", "4M"]) for s in SEEDS])
    windows = pd.DataFrame({"budget": ["2M", "4M"], "window": ["[1.8M, 2M]", "[3.6M, 4M]"]})
    rows = pd.DataFrame(claims.inherited_claim_rows(per_seed, ["2M", "4M"], windows))
    assert list(zip(rows["scope"], rows["measure"])) == [
        (b, m) for b in ["2M", "4M"] for m in (claims.INHERITED_CLAIM[2], claims.FINETUNED_CLAIM[2])]
    assert set(rows["claim"]) == {claims.INHERITED_CLAIM[0]}
    close, far = rows.iloc[1], rows.iloc[3]
    half = T2 * 0.25 / math.sqrt(3)
    assert close["n"] == 3 and close["difference"] == pytest.approx(-0.25) and close["sd"] == pytest.approx(0.25)
    assert (close["ci_lo"], close["ci_hi"]) == (pytest.approx(-0.25 - half), pytest.approx(-0.25 + half))
    assert close["verdict"] == "reproduced" and close["window"] == "[1.8M, 2M]"
    assert far["difference"] == pytest.approx(-5.0) and far["ci_hi"] == pytest.approx(-5 + T2 / math.sqrt(3))
    assert far["verdict"] == "not reproduced"
    assert rows.iloc[0]["difference"] == pytest.approx(-2.0) and rows.iloc[0]["sd"] == pytest.approx(0.0)
    # Training MACs = 3 x MACs x images: scratch 3 x 2M x 57,984, fine-tune 3 x 2M x 17,408.
    assert 3 * 2e6 * 453 * 128 == pytest.approx(347.904e9) and 3 * 2e6 * 136 * 128 == pytest.approx(104.448e9)
    assert close["interval"] == ("t, 3 seeds; training per seed: fine-tune 104.4G MACs (136 steps, 17,408 images, "
                                 "31 s), scratch 347.9G MACs (453 steps, 57,984 images, 95 s)")
    assert rows.iloc[0]["interval"] == ("t, 3 seeds; training per seed: inherited 0, scratch 347.9G MACs "
                                        "(453 steps, 57,984 images, 95 s)")
    assert "695.8G MACs" in rows.iloc[2]["interval"]  # 4M: twice the MACs per image


def test_training_compute_from_a_metrics_record():
    record = {"macs": 1_951_234, "train_steps": 136, "train_images": 17_408, "train_seconds": 31.25}
    assert claims.training_compute(record) == {"steps": 136.0, "images": 17_408.0,
                                               "macs": 3 * 1_951_234 * 17_408, "seconds": 31.25}
    old = claims.training_compute({"macs": 1e6, "train_steps": 10})  # a record from before train_images
    assert old["steps"] == 10.0 and math.isnan(old["images"]) and math.isnan(old["macs"])


def test_fine_tuned_models_from_disk_are_retrained_not_transferred(tmp_path):
    """The replicates report with ft models: their metrics.json but no coco_eval.json."""
    from vitnas.report import make_replicates_report

    root = write_inputs(tmp_path)
    for seed in SEEDS:
        for b in BUDGETS:
            evo = results.load_metrics_record(root, SPACE, seed, f"evo-{b}")
            (root / SPACE / f"seed{seed}" / "retrain" / f"ft-{b}").mkdir(parents=True)
            (root / SPACE / f"seed{seed}" / "retrain" / f"ft-{b}" / "metrics.json").write_text(json.dumps(
                evo | {"model": f"ft-{b}", "kind": "ft", "top1": evo["top1"] - 0.5, "init": "inherited", **FINETUNE}))
    models = MODELS + ["ft-2M", "ft-4M"]
    chains = [results.load_chain(root, SPACE, seed, BUDGETS, models) for seed in SEEDS]
    table = claims_table(chains, BUDGETS, {}, bootstrap=200)
    tuned = _row(table, claims.INHERITED_CLAIM[0], "2M", claims.FINETUNED_CLAIM[2])
    assert tuned["n"] == 3 and tuned["difference"] == pytest.approx(-0.5) and tuned["verdict"] == "reproduced"
    make_replicates_report(root, SPACE, BUDGETS, models, SEEDS, bootstrap=200)
    replicates = pd.read_csv(f"{results.tables_dir(root, SPACE, replicates=True)}/replicates.csv").set_index("model")
    assert list(replicates.index) == ["evo-2M", "ft-2M", "deit-2M", "evo-4M", "ft-4M", "deit-4M"]
    assert replicates.loc["ft-2M", "seeds"] == 3 and replicates["AP mean"].isna().tolist() == [
        False, True, False, False, True, False]


def test_ranking_claims_use_the_paired_bootstrap(table):
    auto = _row(table, FULL_VS_AUTOFORMER, "autoformer")  # tau 1 against tau -1 on every resample
    assert auto["measure"] == "tau(full) - tau(autoformer)"
    # (scipy's tau-b comes out within an ulp of +-1)
    assert (auto["difference"], auto["ci_lo"], auto["ci_hi"]) == pytest.approx((2.0, 2.0, 2.0), rel=0, abs=1e-12)
    assert auto["verdict"] == "reproduced" and auto["interval"] == "paired bootstrap, 10 archs"
    assert math.isnan(auto["sd"]) and auto["window"] == "[1.8M, 2M]"
    # Matched by index and budget, whatever the order; the arch only one of them scored is left out.
    same = _row(table, EACH_TECHNIQUE, "no_private_qk")
    assert same["n"] == 10 and same["difference"] == 0.0 and same["verdict"] == "inconclusive"


def _ablation(inherited: dict) -> dict:
    return {v: {"ranking": {"archs": _archs(acc, STANDALONE)}, "search": {"window": [1.8e6, 2e6]}}
            for v, acc in inherited.items()}


def test_a_technique_that_hurts_is_not_reproduced():
    rng = np.random.default_rng(1)
    ablation = _ablation({"full": rng.permutation(STANDALONE), "no_cyclic": STANDALONE + 1,
                          "depth_sampling": STANDALONE})
    rows = claims.ranking_claim_rows(ablation, bootstrap=200)
    assert [r["scope"] for r in rows] == ["no_cyclic"]  # no AutoFormer arm: no such row
    assert rows[0]["difference"] < 0 and rows[0]["ci_hi"] < 0 and rows[0]["verdict"] == "not reproduced"


def test_no_full_arm_no_ranking_claims():
    assert claims.ranking_claim_rows(_ablation({"autoformer": STANDALONE}), bootstrap=50) == []


@pytest.mark.parametrize("path, rule", [
    ("seed1/transfer/evo-4M/coco_eval.json", "transfer"),
    ("seed2/search/2M/random_history.csv", "random_search"),
    ("ablation/full/ranking.json", "ablation_ranking"),
])
def test_missing_input_names_file_and_rule(tmp_path, path, rule):
    root = write_inputs(tmp_path)
    (root / SPACE / path).unlink()
    with pytest.raises(FileNotFoundError, match=f"{SPACE}/{path} is missing.*'{rule}' rule"):
        claims_of(root, SEEDS, VARIANTS, bootstrap=50)


def test_write_claims_formats(tmp_path, table):
    write_claims(table, tmp_path / "claims")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"claims.{e}" for e in ("csv", "html", "md", "tex")]
    back = pd.read_csv(tmp_path / "claims.csv")
    assert list(back["verdict"]) == list(table["verdict"])
    assert back.loc[0, "ci_lo"] == round(3 - T2 / math.sqrt(3), 3)
    page = (tmp_path / "claims.html").read_text(encoding="utf-8")
    assert "<table" in page and "not reproduced" in page and "t, 3 seeds" in page
    assert "95 % interval" in (tmp_path / "claims.md").read_text().splitlines()[0]


def test_resnas_claims_compare_ranking_and_search_result():
    """ViT-ResNAS's ablation claims: residual vs plain SR and k vs 1 archs per step, each on ranking
    (paired bootstrap) and on the search result (normal interval from the two binomial SEs)."""
    rng = np.random.default_rng(2)
    ablation = _ablation({"full": STANDALONE, "plain_sr": rng.permutation(STANDALONE),
                          "one_arch": STANDALONE})
    searched = {"full": (75.0, 0.5), "plain_sr": (72.0, 0.5), "one_arch": (74.5, 0.5)}
    for arm, (acc, se) in searched.items():
        ablation[arm]["search"] |= {"accuracy": acc, "accuracy_se": se, "held_out_images": 1000}
    rows = claims.ranking_claim_rows(ablation, bootstrap=200, family="resnas")
    assert [(r["scope"], r["measure"].split(":")[0]) for r in rows] == [
        ("plain_sr", "tau(full) - tau(plain_sr)"), ("plain_sr", "best held-out top-1"),
        ("one_arch", "tau(full) - tau(one_arch)"), ("one_arch", "best held-out top-1")]
    residual = rows[1]
    half = 1.959964 * math.sqrt(0.5 ** 2 + 0.5 ** 2)
    assert residual["difference"] == pytest.approx(3.0)
    assert (residual["ci_lo"], residual["ci_hi"]) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert residual["verdict"] == "reproduced" and rows[3]["verdict"] == "inconclusive"
    assert rows[0]["claim"] == "residual beats plain spatial reduction at equal MACs"
