"""What the report's tables and the claims both measure on loaded results: the best candidate of a
search, and the paired difference in ranking quality between two supernets."""
from __future__ import annotations

import pandas as pd

from .results import ARCH_KEYS
from .stats import paired_tau_difference

BOOTSTRAP_SEED = 0  # paired bootstraps of tau differences: the same draws in every report


def searched_method(histories: pd.DataFrame) -> str:
    """The search whose picks were retrained: "pareto" when one Pareto search served every budget
    (search.mode: pareto), else "evolution"."""
    return "pareto" if histories["method"].eq("pareto").any() else "evolution"


def best_per_budget(histories: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per budget: evaluations, and the accuracy, its SE and the MACs of the best candidate (first
    one on ties)."""
    rows = histories[histories["method"] == method].dropna(subset=["accuracy"])
    best = rows.loc[rows.groupby("budget", sort=False)["accuracy"].idxmax()].set_index("budget")
    best["evaluations"] = histories[histories["method"] == method].groupby("budget").size()
    return best[["evaluations", "accuracy", "accuracy_se", "macs"]]


def paired_archs(a: dict, b: dict) -> pd.DataFrame:
    """The reference architectures both ranking records scored, matched by index and budget:
    inherited accuracy under `a` and under `b`, and the stand-alone accuracy (the truth)."""
    left, right = (pd.DataFrame(r["archs"], columns=ARCH_KEYS).astype({"budget": str}) for r in (a, b))
    pairs = left.merge(right, on=["index", "budget"], suffixes=("_a", "_b"), validate="one_to_one")
    return pd.DataFrame({"inherited_a": pairs["inherited_accuracy_a"],
                         "inherited_b": pairs["inherited_accuracy_b"],
                         "standalone": pairs["standalone_accuracy_a"]})


def tau_difference(a: dict, b: dict, bootstrap: int) -> dict:
    """tau(a) - tau(b) against the stand-alone accuracy on the architectures both scored, with a
    paired bootstrap 95 % interval: {difference, ci, n_archs}."""
    pairs = paired_archs(a, b)
    if len(pairs) < 2:  # no ranking, let alone an interval
        nan = float("nan")
        return {"difference": nan, "ci": [nan, nan], "n_archs": len(pairs)}
    out = paired_tau_difference(pairs["inherited_a"], pairs["inherited_b"], pairs["standalone"],
                                bootstrap, BOOTSTRAP_SEED)
    return out | {"n_archs": len(pairs)}
