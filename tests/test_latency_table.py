"""Latency as a search constraint: the per-device table (rebuilt when the device changes, and not
otherwise), prediction as the sum of parts, and a latency-constrained search end to end on a fake,
deterministic timer (no timing is asserted)."""
import json
import random
import re

import pytest

from vitnas import checks, config, latency, latency_table as lt
from vitnas.arch import Arch
from vitnas.errors import ConfigError, SpaceError
from vitnas.families import build_space
from vitnas.search import LatencyGenome, search_and_write
from vitnas.spaces import Sampler

SEARCH = {"population": 4, "generations": 2, "parents": 2, "mutations": 2, "crossovers": 2,
          "min_budget_fraction": 0.5}
VIT = {"family": "vit", "patch_sizes": [4, 7], "embed_dims": [16, 32], "max_layers": 3, "min_depth": 1,
       "heads": [2], "qkv_dims": [16], "mlp_dims": [32, 64]}


def latency_cfg(**search):
    return config.for_space(config.validate({
        "spaces": {"tiny": VIT}, "supernet": {"per_budget": False, "identity_prob": 0.5},
        "search": SEARCH | {"constraint": "latency", "budgets": ["1ms"]} | search}), "tiny")


class CountingTimer:
    """A deterministic stand-in for the clock: seconds from the module's size and the input's, and
    a count of the calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, module, example) -> float:
        self.calls += 1
        return 1e-6 * (sum(p.numel() for p in module.parameters()) / 100 + example.numel() / 10)


@pytest.fixture(scope="module")
def space():
    return build_space(latency_cfg())


def test_table_is_rebuilt_when_the_device_changes_and_not_otherwise(space, tmp_path, monkeypatch):
    blocks = space.all_latency_blocks()
    n = len({b.key for b in blocks})
    assert n == 2 * 2 + 2 * 2 * 1 * 1 * 2  # stems (patch x embed) and blocks (x heads x qkv x mlp)
    timer = CountingTimer()
    path = tmp_path / "table.json"
    fp = lt.fingerprint("cpu", 1, space.img_size, space.in_chans)
    first, timed = lt.build(path, fp, blocks, timer)
    assert timed == timer.calls == n and path.is_file()
    again, timed = lt.build(path, fp, blocks, timer)  # same device: read, nothing timed
    assert timed == 0 and timer.calls == n and again.entries == first.entries
    other = lt.fingerprint("cpu", 2, space.img_size, space.in_chans)  # another thread count
    _, timed = lt.build(path, other, blocks, timer)
    assert timed == n and timer.calls == 2 * n
    assert json.loads(path.read_text())["fingerprint"] == other
    # Through the space: another CPU is another fingerprint, so another key and another table.
    paths = lambda key: str(tmp_path / key / "table.json")
    timer.calls = 0
    lt.space_table(space, paths, time_fn=timer)
    lt.space_table(space, paths, time_fn=timer)
    assert timer.calls == n
    monkeypatch.setattr(latency, "cpu_name", lambda: "Another CPU")
    lt.space_table(space, paths, time_fn=timer)
    assert timer.calls == 2 * n
    assert len(list(tmp_path.glob("*/table.json"))) == 2


def test_only_missing_parts_are_timed(space, tmp_path):
    timer = CountingTimer()
    fp = lt.fingerprint("cpu", 1, space.img_size, space.in_chans)
    blocks = space.all_latency_blocks()
    lt.build(tmp_path / "t.json", fp, blocks[:3], timer)
    _, timed = lt.build(tmp_path / "t.json", fp, blocks, timer)
    assert timed == len(blocks) - 3 and timer.calls == len(blocks)


def test_prediction_is_the_sum_of_the_parts(space):
    timer = CountingTimer()
    table = lt.LatencyTable(lt.fingerprint("cpu", 1, space.img_size, space.in_chans))
    lt.measure(table, space.all_latency_blocks(), timer)
    rng = random.Random(0)
    for _ in range(20):
        arch = space.sample(rng)
        parts = space.latency_blocks(arch)
        assert len(parts) == 1 + arch.depth
        assert {p.key for p in parts} <= {b.key for b in space.all_latency_blocks()}
        assert table.seconds(parts) == pytest.approx(sum(table.entries[lt.key_text(p.key)] for p in parts))
    with pytest.raises(SpaceError, match="no time for the part"):
        lt.LatencyTable(table.fingerprint).seconds(parts)


def test_vit_parts_are_the_real_modules(space):
    import torch

    arch = space.sample(random.Random(1))
    stem, *blocks = space.latency_blocks(arch)
    net = stem.build()
    assert len(net.blocks) == 0 and net.embed_dim == arch.embed and net.arch.patch == arch.patch
    assert net(torch.randn(1, *stem.shape)).shape == (1, space.num_classes)
    block = blocks[0].build()
    layer = arch.blocks[0]
    assert block.attn.qkv.out_features == 3 * layer.qkv and block.mlp.fc1.out_features == layer.mlp
    assert block(torch.randn(1, *blocks[0].shape)).shape == (1, *blocks[0].shape)


@pytest.mark.parametrize("name", ["vit", "resnas"])
def test_each_familys_parts_cover_its_networks(name):
    """Every part a network is made of is in the space's table, the first part is the real network
    with no block, and the blocks are timm Blocks on their stage's tokens."""
    import torch
    import yaml

    with open("config/config.yaml") as f:
        scfg = config.for_space(config.validate(yaml.safe_load(f)), name)
    space = build_space(scfg)
    assert space.has_latency
    every = {b.key for b in space.all_latency_blocks()}
    rng = random.Random(0)
    for _ in range(30):
        arch = space.sample(rng, rng.random())
        parts = space.latency_blocks(arch)
        assert {p.key for p in parts} <= every and len(parts) == 1 + arch.depth
    skeleton, *blocks = parts
    net = skeleton.build().eval()
    assert not [m for m in net.modules() if type(m).__name__ == "Block"] and not skeleton.chain
    assert net(torch.randn(1, *skeleton.shape)).shape == (1, space.num_classes)
    assert all(b.chain and b.build()(torch.randn(1, *b.shape)).shape == (1, *b.shape) for b in blocks)


@pytest.mark.parametrize("search, message, remedy", [
    ({"constraint": "latency", "budgets": ["5ms"]}, "toy family's latency blocks", "search.constraint: macs"),
    ({"budgets": ["2K"], "latency_vs_macs": True}, "the toy family has no latency blocks (Space.latency_blocks)",
     "set it under spaces.<name>.search"),
])
def test_a_family_without_latency_blocks_is_refused_in_one_line(monkeypatch, search, message, remedy):
    """The tests' toy family has no latency hooks (every registered family has them)."""
    from test_family_contract import register_toy

    register_toy(monkeypatch)
    cfg = config.validate({"data": {"img_size": 12}, "spaces": {"t": {"family": "toy"}},
                           "supernet": {"per_budget": False, "identity_prob": 0.5}, "search": search})
    with pytest.raises((SpaceError, ConfigError), match=re.escape(message)) as e:
        checks.check_experiment(cfg)
    assert "\n" not in str(e.value) and remedy in str(e.value)


@pytest.mark.parametrize("search, supernet, message", [
    ({"budgets": ["2M"]}, {}, "not in milliseconds"),
    ({"constraint": "macs", "budgets": ["1ms"]}, {}, "not in MACs"),
    ({}, {"per_budget": True}, "per_budget: false"),
])
def test_latency_config_mistakes_are_named(search, supernet, message):
    cfg = config.validate({"spaces": {"tiny": VIT}, "supernet": {"per_budget": False, "identity_prob": 0.5} | supernet,
                           "search": {"constraint": "latency", "budgets": ["1ms"]} | search})
    with pytest.raises(ConfigError, match=message):
        checks.check_experiment(cfg)


def test_latency_search_end_to_end(space, tmp_path):
    """A latency-constrained search on the tiny space: the window holds on predicted latency, the
    pick's predicted and measured latency are recorded, and a second search reuses the table."""
    cfg = latency_cfg()
    timer = CountingTimer()
    table = lt.LatencyTable({"batch": 1})
    lt.measure(table, space.all_latency_blocks(), timer)
    genome = LatencyGenome(space, Sampler(space, 0.5, None), table)
    costs = sorted(genome.cost(space.sample(random.Random(i), 0.5)) for i in range(200))
    budget = f"{costs[150]:.4f}ms"
    cfg["search"]["budgets"] = [budget]
    score = lambda arch: arch.depth * 3.0 + arch.embed / 10  # a deterministic stand-in for top-1
    timer.calls = 0
    runs = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        best = search_and_write(cfg, "evolution", budget, space, score, 100, out / "history.csv", out / "best.json",
                             out, latency_root=str(tmp_path / "results"), time_fn=timer)
        runs.append(json.loads((out / "best.json").read_text()))
    n = len(space.all_latency_blocks())
    assert timer.calls == n + 2  # the table once, then one measured pick per search
    import pandas as pd

    history = pd.read_csv(tmp_path / "run0" / "history.csv")
    limit = float(budget[:-2])
    assert ((history.latency_ms >= 0.5 * limit - 1e-9) & (history.latency_ms <= limit + 1e-9)).all()
    assert (history.macs == [space.macs(Arch.from_json(a)) for a in history.arch]).all()
    record = runs[0]["search"]
    assert record["constraint"] == "latency" and record["latency_device"] == "cpu-1thread"
    assert record["latency_ms"] <= limit and record["measured_latency_ms"] > 0
    assert record["latency_table"].startswith(str(tmp_path / "results" / "tiny" / "latency"))
    assert runs[0] == runs[1] and best["latency_ms"] == record["latency_ms"]  # the same seed, the same pick


def pairs(diffs, ratio=1.0):
    import pandas as pd

    return pd.DataFrame({"seed": range(len(diffs)), "macs_budget": "4M", "latency_budget": "2.1ms", "macs_accuracy": 80.0,
                         "latency_accuracy": [80.0 + d for d in diffs], "macs_measured_ms": 2.0,
                         "latency_measured_ms": 2.0 * ratio})


@pytest.mark.parametrize("diffs, ratio, verdict", [
    ([1.0, 1.2, 0.8], 1.0, "reproduced"),
    ([-1.0, -1.2, -0.8], 0.98, "not reproduced"),
    ([1.0, -1.0, 0.1], 1.0, "inconclusive"),
    ([1.0, 1.2, 0.8], 1.2, "inconclusive"),  # the latency picks are slower: not at equal latency
    ([1.0], 1.0, "inconclusive"),  # one seed: no interval
])
def test_latency_claim_row(diffs, ratio, verdict):
    from vitnas.claims import COLUMNS, LATENCY_CLAIM, latency_claim_rows

    (row,) = latency_claim_rows(pairs(diffs, ratio))
    assert list(row) == COLUMNS and row["claim"] == LATENCY_CLAIM and row["n"] == len(diffs)
    assert row["difference"] == pytest.approx(sum(diffs) / len(diffs)) and row["verdict"] == verdict
    if len(diffs) > 1:
        assert row["ci_lo"] < row["difference"] < row["ci_hi"]


def test_the_workflow_refuses_a_latency_search_in_one_line():
    cfg = config.validate({"spaces": {"tiny": VIT}, "supernet": {"per_budget": False, "identity_prob": 0.5},
                           "search": {"constraint": "latency", "budgets": ["1ms"]}})
    checks.check_experiment(cfg)  # the stage runs it
    with pytest.raises(ConfigError, match="spaces.tiny: search.constraint = 'latency' runs with `vitnas search` only"):
        checks.check_workflow(cfg)
    checks.check_workflow(config.validate({"spaces": {"tiny": VIT}}))


def test_latency_versus_macs_at_the_macs_picks_measured_latency(space, tmp_path):
    """The stage behind the claims row: the MACs search's pick timed, a latency search under that
    time on the same scores, one record per seed that the claims row averages."""
    from vitnas.claims import LATENCY_CLAIM, latency_claim_rows
    from vitnas.latency_compare import latency_versus_macs

    import pandas as pd

    score = lambda arch: arch.depth * 3.0 + arch.embed / 10 - sum(l.mlp for l in arch.blocks) / 100
    lo, hi = space.macs_range()
    budget = f"{(lo + hi) / 2e6:.2f}M"
    records = []
    for seed in (0, 1):
        macs_cfg = latency_cfg(constraint="macs", budgets=[budget]) | {"seed": seed}
        out = tmp_path / f"seed{seed}"
        macs_best = search_and_write(macs_cfg, "evolution", budget, space, score, 100, out / "history.csv", None, out)
        timer = CountingTimer()
        record = latency_versus_macs(macs_cfg, space, score, 100, budget, macs_best, out, out,
                                     latency_root=str(tmp_path / "results"), time_fn=timer)
        assert json.loads((out / "latency_versus_macs.json").read_text()) == record
        assert record["latency_budget"] == f"{record['macs_predicted_ms']:.4g}ms"  # the window's scale
        assert record["latency_predicted_ms"] <= float(record["latency_budget"][:-2])
        assert record["macs_accuracy"] == macs_best["accuracy"] and (out / "latency_history.csv").is_file()
        records.append(record | {"seed": seed})
    (row,) = latency_claim_rows(pd.DataFrame(records))
    assert row["claim"] == LATENCY_CLAIM and row["n"] == 2
    assert row["difference"] == pytest.approx(sum(r["latency_accuracy"] - r["macs_accuracy"] for r in records) / 2)
