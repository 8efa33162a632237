"""The Pareto search stage (search.mode: pareto): one search, every budget's pick in its window,
files where the per-budget search writes them, and a killed search that resumes to the same history.
The supernet's held-out score is replaced by a cheap deterministic proxy (`scoring` patched)."""
import json

import pandas as pd
import pytest

from vitnas import config, pareto
from vitnas.families import build_space
from vitnas.results import HISTORY_COLUMNS
from vitnas.spaces import window

CFG = config.validate({"search": {"mode": "pareto", "budgets": ["2M", "4M"], "population": 6, "generations": 2,
                                  "parents": 3, "mutations": 3, "crossovers": 3, "min_budget_fraction": 0.6},
                       "supernet": {"per_budget": False, "identity_prob": 0.3}})


def proxy_score(arch):
    return arch.depth * 3.0 + arch.embed / 10 + sum(l.mlp for l in arch.blocks) / 100


def outputs(tmp_path):
    return {b: (tmp_path / b / "history.csv", tmp_path / b / "best.json") for b in CFG["search"]["budgets"]}


def run(tmp_path, monkeypatch, score):
    space = build_space(CFG)
    monkeypatch.setattr(pareto, "scoring", lambda cfg, data, supernet: (space, score, 100))
    return pareto.run_pareto(CFG, None, None, tmp_path / "front.csv", tmp_path / "history.csv",
                             outputs(tmp_path), tmp_path / "ckpt")


def test_picks_lie_in_their_windows_and_are_written_as_per_budget_searches(tmp_path, monkeypatch):
    picks = run(tmp_path, monkeypatch, proxy_score)
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(history) == 2 * (6 + 2 * 6) and history["method"].eq("pareto").all()  # k x the evaluations
    front = pd.read_csv(tmp_path / "front.csv")
    for _, f in front.iterrows():  # nothing evaluated beats a front member on both objectives
        better = (history["accuracy"] >= f["accuracy"]) & (history["macs"] <= f["macs"])
        assert not (better & ((history["accuracy"] > f["accuracy"]) | (history["macs"] < f["macs"]))).any()
    for budget, (hist, best) in outputs(tmp_path).items():
        lo, hi = window(CFG, budget)
        rows = pd.read_csv(hist)
        assert set(HISTORY_COLUMNS) <= set(rows.columns) and len(rows) > 0
        assert rows["macs"].between(lo, hi).all() and (rows["budget"] == budget).all()
        assert len(rows) == history["macs"].between(lo, hi).sum()
        record = json.loads(best.read_text())["search"]
        assert lo <= record["macs"] <= hi and record["accuracy"] == rows["accuracy"].max()
        assert (record["window_lo"], record["window_hi"]) == (lo, hi) and picks[budget]["macs"] == record["macs"]


def test_a_killed_pareto_search_resumes_to_the_same_history(tmp_path, monkeypatch):
    run(tmp_path / "straight", monkeypatch, proxy_score)
    count = [0]

    def dies_in_the_second_generation(arch):
        count[0] += 1
        if count[0] > 12 + 5:  # generation 0 (2 x 6) checkpointed, killed mid-generation 1
            raise KeyboardInterrupt
        return proxy_score(arch)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", monkeypatch, dies_in_the_second_generation)
    assert (tmp_path / "killed/ckpt/pareto-scores.json").is_file()
    assert not (tmp_path / "killed/history.csv").exists()  # nothing half-written
    run(tmp_path / "killed", monkeypatch, proxy_score)
    straight, resumed = (pd.read_csv(tmp_path / d / "history.csv") for d in ("straight", "killed"))
    pd.testing.assert_frame_equal(straight, resumed)
    for b in CFG["search"]["budgets"]:
        assert (tmp_path / "straight" / b / "best.json").read_text() == (tmp_path / "killed" / b / "best.json").read_text()


def test_the_figure_shades_every_window_and_marks_every_pick(tmp_path, monkeypatch):
    from vitnas.space_tables import pareto_search_figure

    picks = run(tmp_path, monkeypatch, proxy_score)
    history = pd.read_csv(tmp_path / "history.csv")
    wins = {b: window(CFG, b) for b in CFG["search"]["budgets"]}
    (ax,) = pareto_search_figure(history, wins).axes
    labels = ax.get_legend_handles_labels()[1]
    assert [l for l in labels if l.startswith("window of")] == ["window of 2M", "window of 4M"]
    assert [l for l in labels if l.startswith("pick of")] == ["pick of 2M", "pick of 4M"]
    stars = [c for c in ax.collections if c.get_label().startswith("pick of")]
    assert sorted(tuple(c.get_offsets()[0]) for c in stars) == sorted(
        (p["macs"] / 1e6, p["accuracy"]) for p in picks.values())
