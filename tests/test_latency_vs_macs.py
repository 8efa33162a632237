"""search.latency_vs_macs: the config switch and its one-line refusals, the stage `vitnas
latency-vs-macs` writing its record where the rule declares it (a fake timer and scorer), and the
claims row and the latency_vs_macs table the figures read back from that record."""
import copy
import json

import pandas as pd
import pytest
import yaml

from conftest import REPO
from vitnas import checks, cli, config, results
from vitnas.claims import DECIMALS, LATENCY_CLAIM
from vitnas.errors import ConfigError
from vitnas.plan import jobs
from vitnas.report import make_replicates_report, make_report
from vitnas.search import search_and_write

from test_latency_table import SEARCH, VIT, CountingTimer
from test_report import BUDGETS, MODELS, SEEDS, SPACE, SUPERNETS, write_inputs

DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())


def default_with(override: dict) -> dict:
    cfg = copy.deepcopy(DEFAULT)
    for name, section in override.get("spaces", {}).items():
        cfg["spaces"][name] = {**cfg["spaces"][name], **{k: {**cfg["spaces"][name].get(k, {}), **v}
                                                         for k, v in section.items()}}
    return config.validate(cfg | {k: v for k, v in override.items() if k != "spaces"})


def test_the_default_config_compares_resnas_at_4m():
    cfg = config.validate(copy.deepcopy(DEFAULT))
    checks.check_experiment(cfg)
    assert {n: config.for_space(cfg, n)["search"]["latency_vs_macs"] for n in config.active_spaces(cfg)} == \
        {"vit": [], "resnas": ["4M"], "twins": []}
    planned = [j for j in jobs(cfg) if j.rule == "latency_vs_macs"]
    assert [(j.space, j.seed, j.wildcard) for j in planned] == [("resnas", 0, "4M")]
    assert sum(j.rule == "latency_vs_macs" for j in jobs(cfg, replicates=True)) == 3  # one per seed


@pytest.mark.parametrize("override, message", [
    ({"spaces": {"resnas": {"search": {"latency_vs_macs": ["2M"]}}}},
     "config: spaces.resnas.search.latency_vs_macs: '2M' is not in search.budgets (4M); list only budgets"),
    ({"search": {"latency_vs_macs": ["2M"]}},  # reaches the spaces without their own: twins searches 4M
     "config: search.latency_vs_macs (space twins): '2M' is not in search.budgets (4M)"),
    ({"spaces": {"twins": {"search": {"latency_vs_macs": ["4M"], "init": "shrink"}}}},  # twins has latency blocks
     "config: spaces.twins.search.latency_vs_macs: a latency search draws its first population"),
    ({"spaces": {"resnas": {"search": {"init": "shrink"}}}},
     "search.init = 'shrink' shrinks by MACs; set search.init: sample or remove it"),
    ({"spaces": {"resnas": {"search": {"constraint": "latency", "budgets": ["1ms"], "latency_vs_macs": ["4M"]}}}},
     "compares with a MACs search, but search.constraint = 'latency'"),
])
def test_config_mistakes_are_one_line(override, message):
    with pytest.raises(ConfigError) as e:
        checks.check_experiment(default_with(override))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_true_follows_the_budgets_a_config_sets():
    """config/config.yaml's `true` is every MACs budget of the space, so an overlay that changes the
    budgets (config/cifar10.yaml: 4.5M) keeps a valid comparison; false and [] are none; under
    search.constraint: latency there is no MACs budget to compare."""
    def listed(search: dict) -> list:
        return config.for_space(default_with({"spaces": {"resnas": {"search": search}}}), "resnas")["search"][
            "latency_vs_macs"]

    assert listed({"budgets": ["4.5M"]}) == ["4.5M"]
    assert listed({"budgets": ["3M", "4.5M"]}) == ["3M", "4.5M"]
    assert listed({"latency_vs_macs": False}) == listed({"latency_vs_macs": []}) == []
    assert listed({"constraint": "latency", "budgets": ["1ms"]}) == []


def test_a_per_budget_supernet_is_allowed():
    """The latency search reads the MACs budget's own supernet, drawn as that supernet was trained."""
    checks.check_experiment(default_with({"spaces": {"resnas": {"supernet": {"per_budget": True}},
                                                     "vit": {"search": {"latency_vs_macs": ["2M"]}}}}))


def test_the_stage_has_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["latency-vs-macs", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0 and "usage: vitnas latency-vs-macs" in out
    assert "--best BEST that search's best.json" in out and "--out OUT output folder" in out


def test_stage_record_feeds_the_claims_row_and_table(tmp_path, monkeypatch, capsys):
    """Per seed the MACs search's best.json, then `vitnas latency-vs-macs` on it (a deterministic
    scorer for the supernet, a fake timer for the device), writing where the rule declares; the
    figures stage then reads the records into the claims row and the latency_vs_macs table."""
    import vitnas.latency_table
    import vitnas.search
    from vitnas.families import build_space

    experiment = {"spaces": {SPACE: VIT}, "supernet": {"per_budget": False, "identity_prob": 0.5}, "search": SEARCH}
    space = build_space(config.for_space(config.validate(experiment), SPACE))  # test_latency_table's tiny space
    lo, hi = space.macs_range()
    budget = f"{(lo + hi) / 2e6:.2f}M"
    experiment["search"] = SEARCH | {"budgets": [budget], "latency_vs_macs": [budget]}
    score = lambda arch: arch.depth * 3.0 + arch.embed / 10 - sum(l.mlp for l in arch.blocks) / 100
    monkeypatch.setattr(vitnas.search, "scoring", lambda cfg, data, supernet: (space, score, 100))
    monkeypatch.setattr(vitnas.latency_table, "timer", lambda *a, **k: CountingTimer())
    monkeypatch.chdir(tmp_path)  # results/<experiment>/ as the rules write it
    root = results.experiment_dir("default")
    for seed in SEEDS:
        macs_cfg = config.for_space(config.validate(experiment | {"seed": seed}), SPACE)
        best = results.search_best(root, SPACE, seed, budget)
        search_and_write(macs_cfg, "evolution", budget, space, score, 100, tmp_path / f"h{seed}.csv", best, tmp_path)
        record = results.latency_vs_macs(root, SPACE, seed, budget)
        assert cli.main(["latency-vs-macs", "--config", json.dumps(experiment), "--space", SPACE, "--seed", str(seed),
                         "--budget", budget, "--data", "data", "--supernet", "s.safetensors", "--best", best,
                         "--out", str(tmp_path / results.search_dir(root, SPACE, seed, budget)),
                         "--checkpoints", "ckpt"]) == 0
        written = json.loads(open(record).read())
        line = capsys.readouterr().out
        assert f"MACs pick held-out top-1 {written['macs_accuracy']:.2f}" in line
        assert f"{written['latency_measured_ms']:.3f} ms measured" in line
        assert written["macs_accuracy"] == json.loads(open(best).read())["search"]["accuracy"]
        assert (tmp_path / results.latency_vs_macs_history(root, SPACE, seed, budget)).is_file()
    assert cli.main(["latency-vs-macs", "--config", json.dumps(experiment), "--space", SPACE, "--budget", "9M",
                     "--data", "d", "--supernet", "s", "--best", best, "--out", "o", "--checkpoints", "c"]) == 1
    assert f"is the pick of {budget}, not of --budget 9M" in capsys.readouterr().err

    # The figures: the chain of test_report's synthetic results beside the records written above.
    write_inputs(tmp_path / root, ablation=False)
    pairs = results.load_latency_vs_macs(root, SPACE, SEEDS, [budget])
    make_report(root, SPACE, BUDGETS, MODELS, 0, SUPERNETS, formats=("png",), dpi=40, latency_budgets=[budget])
    make_replicates_report(root, SPACE, BUDGETS, MODELS, SEEDS, latency_budgets=[budget])
    table = pd.read_csv(f"{root}/{SPACE}/tables/latency_vs_macs.csv")
    assert len(table) == 1 and table.loc[0, "MACs budget"] == budget and table.loc[0, "device"] == "cpu-1thread"
    assert table.loc[0, "latency budget"] == f"{pairs.loc[0, 'macs_predicted_ms']:.4g}ms"
    for pick in ("MACs", "latency"):  # predicted and measured, as the record has them
        for kind in ("predicted", "measured"):
            key = f"{pick.lower()}_{kind}_ms"
            assert pairs.loc[0, key] > 0 and table.loc[0, f"{pick} pick {kind} (ms)"] == round(pairs.loc[0, key], 3)
    one = pd.read_csv(f"{root}/{SPACE}/tables/claims.csv").set_index("claim").loc[LATENCY_CLAIM]
    assert one["n"] == 1 and one["verdict"] == "inconclusive" and one["scope"].startswith(f"{budget} / ")
    row = pd.read_csv(f"{root}/{SPACE}/replicates/tables/claims.csv").set_index("claim").loc[LATENCY_CLAIM]
    assert row["n"] == 3 and "measured latency ratio" in row["interval"]  # one row for the budget's 3 seeds
    # claims.csv holds the difference rounded to DECIMALS["difference"] places: at most half a unit off
    half_unit = 0.5 * 10 ** -DECIMALS["difference"]
    assert row["difference"] == pytest.approx((pairs["latency_accuracy"] - pairs["macs_accuracy"]).mean(),
                                              abs=half_unit * (1 + 1e-9))


def test_a_space_without_budgets_gets_an_empty_table(tmp_path):
    root = write_inputs(tmp_path, seeds=[0], ablation=False)
    make_report(root, SPACE, BUDGETS, MODELS, 0, SUPERNETS, formats=("png",), dpi=40)
    table = pd.read_csv(root / SPACE / "tables/latency_vs_macs.csv")
    assert table.empty and "MACs pick measured (ms)" in table.columns
    assert LATENCY_CLAIM not in set(pd.read_csv(root / SPACE / "tables/claims.csv")["claim"])


def test_a_record_without_its_keys_names_the_rule(tmp_path):
    from vitnas.errors import ResultError

    path = tmp_path / results.latency_vs_macs("r", "resnas", 0, "4M")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"macs_budget": "4M"}))
    with pytest.raises(ResultError, match="lacks latency_budget.*'latency_vs_macs' rule"):
        results.load_latency_vs_macs(str(tmp_path / "r"), "resnas", [0], ["4M"])
    with pytest.raises(FileNotFoundError, match="made by the 'latency_vs_macs' rule"):
        results.load_latency_vs_macs(str(tmp_path / "r"), "resnas", [1], ["4M"])
