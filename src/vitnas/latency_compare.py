"""The latency-constrained search against the MACs-constrained one, at equal measured latency (the
claims row `claims.LATENCY_CLAIM`): a latency-constrained search of the same supernet, with the
same evaluations, runs under the MACs search's pick's latency as its budget, on the latency table's
scale (the pick's predicted latency), and both picks are then timed end to end on the table's
device; both picks' held-out top-1, predicted and measured latency go into one record per seed and
MACs budget, which `claims.latency_claim_rows` averages over seeds (checking that the measured
latencies are equal).

Why the predicted latency as the budget, not the measured one: the search's window [fraction x L,
L] is on predicted latency (2.5 % wide for ViT-ResNAS), and the table's bias (-1 to -6 %,
benchmarks/README.md) or the load at the moment of one measurement (the default run's resnas 4M
pick: 13.1 ms measured against 6.4 ms predicted, load average 5) can put a measured L where no
network is predicted, and the search then fails.

The stage `vitnas latency-vs-macs` (`run`) and the workflow's rule latency_vs_macs, per MACs
budget listed in search.latency_vs_macs (config/README.md).
"""
from __future__ import annotations

import copy
from pathlib import Path

from .arch import Arch
from .errors import ConfigError
from .io import read_json, write_json
from .search import latency_search_parts, measure_pick, search_and_write
from .spaces import Space, sampler, supernet_budget
from .units import format_macs


def latency_versus_macs(cfg: dict, space: Space, score, images: int, macs_budget: str, macs_best: dict,
                        out_dir, ckpt_dir, latency_root: str | None = None, time_fn=None) -> dict:
    """One record: `macs_best` (the MACs search's best.json search record plus its "arch", under
    `macs_budget`) against a latency search under its predicted latency, on `score`'s supernet;
    writes `out_dir`/latency_versus_macs.json and the latency search's history beside it."""
    lat = copy.deepcopy(cfg)
    lat["search"]["constraint"] = "latency"
    draw = sampler(cfg, space, supernet_budget(cfg, macs_budget))  # the MACs budget's supernet
    genome, time_fn, _ = latency_search_parts(lat, space, draw, latency_root, time_fn)
    predicted = genome.cost(Arch.from_json(macs_best["arch"]))
    measured = measure_pick(lat, space, macs_best, time_fn)["measured_latency_ms"]
    budget = f"{predicted:.4g}ms"
    lat["search"]["budgets"] = [budget]
    out_dir = Path(out_dir)
    best = search_and_write(lat, "evolution", budget, space, score, images, out_dir / "latency_history.csv", None,
                         ckpt_dir, latency_root, time_fn, draw)
    fraction = cfg["search"]["min_budget_fraction"]
    record = {"scope": f"{macs_budget} / {budget}", "macs_budget": macs_budget, "latency_budget": budget,
              "window": f"[{fraction * predicted:.4g}, {predicted:.4g}] ms; MACs [{format_macs(macs_best['window_lo'])}, "
                        f"{format_macs(macs_best['window_hi'])}]",
              "macs_accuracy": macs_best["accuracy"], "macs_measured_ms": measured, "macs_predicted_ms": predicted,
              "latency_accuracy": best["accuracy"], "latency_measured_ms": best["measured_latency_ms"],
              "latency_predicted_ms": best["latency_ms"], "latency_arch": best["arch"],
              "latency_device": best["latency_device"]}
    write_json(out_dir / "latency_versus_macs.json", record)
    return record


def run(cfg: dict, macs_budget: str, data_dir, supernet_path, best_path, out_dir, ckpt_dir) -> dict:
    """The stage: the MACs search's best.json of `macs_budget` (`best_path`) against a latency
    search of the same supernet (`supernet_path`), scored on the held-out split."""
    from .search import scoring

    best = read_json(best_path)
    if best["search"]["budget"] != macs_budget:
        raise ConfigError(f"latency-vs-macs: {best_path} is the pick of {best['search']['budget']}, not of "
                          f"--budget {macs_budget}; pass that budget's best.json")
    macs_best = best["search"] | {"arch": Arch.from_dict(best).to_json()}
    space, score, images = scoring(cfg, data_dir, supernet_path)
    return latency_versus_macs(cfg, space, score, images, macs_budget, macs_best, out_dir, ckpt_dir)
