"""The papers' claims as measured here: one row per claim and scope, with the measured difference,
its 95 % interval and a verdict (vitnas.stats.verdict: reproduced only if the whole interval is
above 0).

Seed-level claims (the searched model against its DeiT-style baseline, evolution against random
search, detection transfer) are one difference per replicate seed, averaged with a t-interval over
the seeds; with one seed there is no interval and the verdict is inconclusive. Ranking claims (the
ablation) are a tau difference on the same reference architectures, with a paired bootstrap
interval over those architectures.

Known-answer claims run the family's search size (its `search` section) on NAS-Bench-Macro, where
each network's accuracy is known: a paired difference of regrets over 30 search seeds with a BCa
bootstrap interval, beside the measured rows (seconds; nothing cached).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .measures import best_per_budget, searched_method, tau_difference
from .plan import TRAIN_PASSES
from .results import FINETUNED, Chain, inherited_model
from .stats import mean_interval, verdict
from .tables import format_window, search_windows, write_table
from .units import format_macs, parse_macs

NAN = float("nan")

COLUMNS = ["claim", "scope", "measure", "n", "difference", "sd", "ci_lo", "ci_hi", "interval", "verdict",
           "window"]
DECIMALS = {"difference": 3, "sd": 3, "ci_lo": 3, "ci_hi": 3}

# (claim, per-seed difference column, what is measured), in the order of the table; {baseline}
# is the family's hand-designed baseline (DeiT-style, ViT-Res-Tiny-shaped).
SEED_CLAIMS = [
    ("searched beats the {baseline} baseline at matched MACs", "top1",
     "test top-1: evo - deit (pp)"),
    ("evolution beats random search at equal evaluations", "search",
     "best held-out top-1: evolution - random (pp)"),
    ("searched backbones transfer better to detection (AP)", "ap", "COCO box AP: evo - deit"),
]
# AutoFormer's claim (Chen et al., ICCV 2021): a searched network with the supernet's inherited
# weights, as is or after a short fine-tune, is as good as the same network trained from scratch.
# Measured when the searched networks are retrained from scratch (retrain.init: scratch), two rows
# per budget: the export's top-1, untrained, and ft-<budget>'s, fine-tuned from it
# (retrain.compare_finetune, replicates target), each minus evo-<budget>'s from scratch; "matches" =
# at most INHERIT_MARGIN pp worse (our margin for "comparable", not a number of the paper's). The
# rows also state each path's training compute (`training_compute`), the claim's other half.
INHERITED_CLAIM = ("inherited weights (+ short fine-tune) match training from scratch at equal architecture",
                   "inherited", "test top-1: inherited (untrained) - scratch (pp)")
FINETUNED_CLAIM = (INHERITED_CLAIM[0], "finetuned", "test top-1: inherited + fine-tune - scratch (pp)")
INHERIT_MARGIN = 1.0
Z95 = 1.959964  # two-sided 95 % normal quantile
KNOWN_EVOLUTION = "evolution beats random search on a known-answer benchmark"
KNOWN_PARETO = "one Pareto search matches per-budget searches at equal evaluations"
MATCH_MARGIN = 0.1  # pp of regret: "matches" = the Pareto search at most this much worse
LATENCY_TOLERANCE = 0.05  # "equal": the latency pick at most 5 % slower, measured (about the timing noise)

CAPTION = (
    "The papers' claims as measured here: per claim and scope the measured difference (positive: the "
    "claim holds), its 95 % interval and a verdict (reproduced: the whole interval above 0; not "
    "reproduced: wholly below; inconclusive otherwise). Seed-level claims: mean and SD over the "
    "replicate seeds with a Student t-interval of the mean; ranking claims: Kendall tau against the "
    "stand-alone top-1 of the reference architectures, with a paired percentile-bootstrap interval "
    "over those architectures; window: the MACs window searched in. Known-answer rows: the family's "
    "search size on NAS-Bench-Macro (FLOPs windows at the table's cost percentiles), the mean paired "
    "difference of regrets over 30 search seeds with a 95 % BCa bootstrap interval; \"matches\" is "
    f"reproduced when the interval lies above -{MATCH_MARGIN} pp (the Pareto search at most "
    f"{MATCH_MARGIN} pp of regret worse), not reproduced when wholly below it. Inherited weights: "
    "the searched network with the supernet's weights, untrained, against the same network trained "
    f"from scratch, per seed, and the same network fine-tuned from the supernet's weights (ft, with "
    f"retrain.compare_finetune in `snakemake replicates`); \"match\" is reproduced when the interval lies "
    f"above -{INHERIT_MARGIN} pp. Their training compute, mean per seed: {TRAIN_PASSES} x the model's MACs "
    "x the training images seen (forward and backward), the steps, images and wall seconds of training. "
    "Latency against MACs (search.latency_vs_macs): per MACs budget and seed, a latency-constrained search "
    "under the MACs pick's predicted latency, its pick's held-out top-1 minus the MACs pick's; inconclusive "
    f"when the latency picks are measured more than {LATENCY_TOLERANCE * 100:g} % slower (table latency_vs_macs: "
    "both picks' predicted and measured latency)."
)


# ---------------------------------------------------------------------------------------- seeds

def seed_differences(chain: Chain, budgets: list[str]) -> pd.DataFrame:
    """One row per budget of one seed's chain: the differences the seed-level claims average."""
    top1 = chain.metrics.set_index("model")["top1"].astype(float)
    ap = chain.detection.set_index("model")["AP"]
    evo, rnd = (best_per_budget(chain.histories, m)["accuracy"]
                for m in (searched_method(chain.histories), "random"))
    windows = search_windows(chain.histories)
    return pd.DataFrame({
        "seed": chain.seed, "budget": budgets, "window": [windows.get(b) for b in budgets],
        "top1": [top1[f"evo-{b}"] - top1[f"deit-{b}"] for b in budgets],
        "search": [evo[b] - rnd[b] for b in budgets],
        "ap": [ap[f"evo-{b}"] - ap[f"deit-{b}"] for b in budgets],
    })


COMPUTE = ["steps", "images", "macs", "seconds"]


def training_compute(record) -> dict:
    """What one retraining cost, from its metrics (a metrics.json record or a `load_metrics` row):
    steps, images seen, training MACs (TRAIN_PASSES x the model's MACs x images: vitnas.plan's
    convention) and wall seconds of training; NaN where the record predates the keys."""
    images = float(record.get("train_images", NAN))
    return {"steps": float(record.get("train_steps", NAN)), "images": images,
            "macs": TRAIN_PASSES * float(record["macs"]) * images, "seconds": float(record.get("train_seconds", NAN))}


def inherited_differences(chain: Chain, budgets: list[str]) -> pd.DataFrame:
    """Per budget of one seed's chain, where the searched network was retrained from scratch
    (`scratch`; not with retrain.init: inherited): the export's top-1 and the fine-tuned model's
    (NaN without one) minus the scratch one's, and the training compute of both paths
    (scratch_<COMPUTE>, ft_<COMPUTE>)."""
    metrics = chain.metrics.set_index("model")
    top1 = metrics["top1"].astype(float)
    inh = chain.inherited.set_index("model")["top1"].astype(float)
    init = metrics["init"] if "init" in metrics else pd.Series("scratch", index=metrics.index)

    def cost(path: str, model: str, known: bool) -> dict:  # scratch_steps, ..., ft_seconds
        values = training_compute(metrics.loc[model]) if known else dict.fromkeys(COMPUTE, NAN)
        return {f"{path}_{k}": v for k, v in values.items()}

    rows = []
    for b in budgets:
        evo, ft = f"evo-{b}", f"{FINETUNED}-{b}"
        scratch, tuned = init[evo] == "scratch", ft in top1.index
        rows.append({"seed": chain.seed, "budget": b, "scratch": scratch,
                     "inherited": inh[inherited_model(b)] - top1[evo] if scratch else NAN,
                     "finetuned": top1[ft] - top1[evo] if scratch and tuned else NAN,
                     **cost("scratch", evo, scratch), **cost("ft", ft, tuned)})
    return pd.DataFrame(rows)


def _compute_text(runs: pd.DataFrame, path: str) -> str:
    """One path's training compute, mean over the seeds that ran it: '348G MACs (453 steps, ...)'."""
    c = {k: runs[f"{path}_{k}"].astype(float).mean() for k in COMPUTE}
    if not math.isfinite(c["images"]):
        return "not recorded (metrics.json predates train_images)"
    return (f"{format_macs(c['macs'])} MACs ({c['steps']:,.0f} steps, {c['images']:,.0f} images, "
            f"{c['seconds']:,.0f} s)")


def inherited_claim_rows(per_seed: pd.DataFrame, budgets: list[str], windows: pd.DataFrame) -> list[dict]:
    """Per budget, the inherited row then the fine-tuned one: the mean over seeds of inherited
    (untrained; fine-tuned) - scratch with its t-interval, reproduced when the interval lies above
    -INHERIT_MARGIN; the interval text adds each path's training compute, mean per seed."""
    rows = []
    for budget in budgets:
        runs = per_seed[per_seed["budget"] == budget]
        scratch = f"scratch {_compute_text(runs, 'scratch')}"
        cost = {"inherited": "inherited 0", "finetuned": f"fine-tune {_compute_text(runs, 'ft')}"}
        for claim, column, measure in (INHERITED_CLAIM, FINETUNED_CLAIM):
            s = mean_interval(runs[column].astype(float).tolist())
            if not runs["scratch"].any():
                text = "retrain.init is inherited: no scratch model"
            elif not s["n"]:
                text = "no ft model: `snakemake replicates` with retrain.compare_finetune"
            else:
                text = f"{_t_interval_text(s['n'])}; training per seed: {cost[column]}, {scratch}"
            rows.append({"claim": claim, "scope": budget, "measure": measure, "n": s["n"], "difference": s["mean"],
                         "sd": s["sd"], "ci_lo": s["ci"][0], "ci_hi": s["ci"][1], "interval": text,
                         "verdict": verdict([s["ci"][0] + INHERIT_MARGIN, s["ci"][1] + INHERIT_MARGIN]),
                         "window": _windows_text(windows[windows["budget"] == budget]["window"])})
    return rows


def _t_interval_text(n: int) -> str:
    if n > 1:
        return f"t, {n} seeds"
    return "1 seed: run `snakemake replicates`" if n == 1 else "no value"


def _windows_text(windows: pd.Series) -> str:
    """The window of a budget; every distinct one if the seeds disagree."""
    return "; ".join(dict.fromkeys(w for w in windows if w))


def seed_claim_rows(per_seed: pd.DataFrame, budgets: list[str], baseline: str = "DeiT-style") -> list[dict]:
    """Per seed-level claim and budget: mean difference over the seeds with its t-interval."""
    rows = []
    for claim, column, measure in SEED_CLAIMS:
        claim = claim.format(baseline=baseline)
        for budget in budgets:
            runs = per_seed[per_seed["budget"] == budget]
            s = mean_interval(runs[column].astype(float).tolist())
            rows.append({"claim": claim, "scope": budget, "measure": measure, "n": s["n"],
                         "difference": s["mean"], "sd": s["sd"], "ci_lo": s["ci"][0], "ci_hi": s["ci"][1],
                         "interval": _t_interval_text(s["n"]), "verdict": verdict(s["ci"]),
                         "window": _windows_text(runs["window"])})
    return rows


# ---------------------------------------------------------------------------------------- latency

LATENCY_CLAIM = "at equal measured latency, the latency-constrained search beats the MACs-constrained one"


def latency_claim_rows(pairs: pd.DataFrame) -> list[dict]:
    """Per MACs budget, over the replicate seeds: the held-out top-1 of the latency-constrained
    search's pick minus the MACs-constrained one's, both searches of the same supernet, with a
    t-interval; the scope names the budget and the latency budgets (each seed's MACs pick's
    predicted latency). `pairs`: one row per seed and MACs budget with `macs_budget`,
    `latency_budget`, `latency_accuracy`, `macs_accuracy`, `latency_measured_ms` and
    `macs_measured_ms` (latency_versus_macs.json, `results.load_latency_vs_macs`). Equal latency is
    checked, not assumed: if the latency picks are on average more than LATENCY_TOLERANCE slower
    (measured) than the MACs picks, the row is inconclusive whatever the interval."""
    rows = []
    for budget, runs in pairs.groupby("macs_budget", sort=False):  # not by scope: its ms differ per seed
        scope = f"{budget} / {', '.join(dict.fromkeys(runs['latency_budget']))}"
        s = mean_interval((runs["latency_accuracy"] - runs["macs_accuracy"]).astype(float).tolist())
        ratio = float((runs["latency_measured_ms"] / runs["macs_measured_ms"]).mean())
        equal = ratio <= 1 + LATENCY_TOLERANCE
        rows.append({"claim": LATENCY_CLAIM, "scope": scope, "measure": "best held-out top-1: latency - MACs search (pp)",
                     "n": s["n"], "difference": s["mean"], "sd": s["sd"], "ci_lo": s["ci"][0], "ci_hi": s["ci"][1],
                     "interval": f"{_t_interval_text(s['n'])}; measured latency ratio {ratio:.3f}"
                                 + ("" if equal else f" > {1 + LATENCY_TOLERANCE:g}: not equal"),
                     "verdict": verdict(s["ci"]) if equal else "inconclusive",
                     "window": _windows_text(runs["window"]) if "window" in runs else ""})
    return rows


# ---------------------------------------------------------------------------------------- known answers

def _known_row(claim: str, scope: str, measure: str, lo: float, hi: float, d: dict, margin: float = 0.0) -> dict:
    """A known-answer row; the verdict asks the interval to lie above -margin."""
    return {"claim": claim, "scope": scope, "measure": measure, "n": d["n"], "difference": d["mean"],
            "sd": d["sd"], "ci_lo": d["ci"][0], "ci_hi": d["ci"][1],
            "interval": f"paired BCa bootstrap, {d['n']} search seeds",
            "verdict": verdict([d["ci"][0] + margin, d["ci"][1] + margin]), "window": format_window(lo, hi)}


def known_answer_rows(search: dict, mode: str = "per_budget") -> list[dict]:
    """On NAS-Bench-Macro at the family's search size (`search`: its search section): evolution
    against random search in a median-cost window; with `mode` pareto also one Pareto search
    against per-budget evolutions, one row per budget's window."""
    from .search_quality import evolution_vs_random, pareto_vs_evolution

    win, d = evolution_vs_random(search)
    rows = [_known_row(KNOWN_EVOLUTION, f"NAS-Bench-Macro {win.name}", "regret: random - evolution (pp)",
                       win.lo, win.hi, d)]
    if mode == "pareto":
        for win, d in pareto_vs_evolution(search, len(search["budgets"])):
            rows.append(_known_row(KNOWN_PARETO, f"NAS-Bench-Macro {win.name}",
                                   "regret: per-budget evolution - pareto (pp)", win.lo, win.hi, d, MATCH_MARGIN))
    return rows


def _beside_evolution_rows(rows: list[dict], known: list[dict]) -> list[dict]:
    """`known` right after the measured evolution-vs-random rows."""
    measured = SEED_CLAIMS[1][0]
    last = max(i for i, r in enumerate(rows) if r["claim"] == measured)
    return rows[:last + 1] + known + rows[last + 1:]


# ---------------------------------------------------------------------------------------- ranking

def _ranking_row(claim: str, scope: str, ablation: dict, arm: str, bootstrap: int) -> dict:
    """tau(full) - tau(arm) on the reference architectures both scored, paired bootstrap."""
    d = tau_difference(ablation["full"]["ranking"], ablation[arm]["ranking"], bootstrap)
    window = format_window(*ablation["full"]["search"]["window"])  # the budget the supernets trained for
    return {"claim": claim, "scope": scope, "measure": f"tau(full) - tau({arm})", "n": d["n_archs"],
            "difference": d["difference"], "sd": float("nan"), "ci_lo": d["ci"][0], "ci_hi": d["ci"][1],
            "interval": f"paired bootstrap, {d['n_archs']} archs", "verdict": verdict(d["ci"]),
            "window": window}


def _search_row(claim: str, scope: str, ablation: dict, arm: str) -> dict:
    """Best held-out top-1 of the arm's small search against the full method's, under the same
    budget: a normal interval from the two binomial SEs (held-out measurement noise only, one seed)."""
    full, other = ablation["full"]["search"], ablation[arm]["search"]
    diff = full["accuracy"] - other["accuracy"]
    half = Z95 * (full["accuracy_se"] ** 2 + other["accuracy_se"] ** 2) ** 0.5
    ci = (diff - half, diff + half)
    return {"claim": claim, "scope": scope, "measure": f"best held-out top-1: full - {arm} (pp)", "n": 1,
            "difference": diff, "sd": float("nan"), "ci_lo": ci[0], "ci_hi": ci[1],
            "interval": f"normal, binomial SE over {full['held_out_images']} images, 1 seed",
            "verdict": verdict(ci), "window": format_window(*full["window"])}


def ranking_claim_rows(ablation: dict, bootstrap: int, family: str = "vit") -> list[dict]:
    """The family's ablation claims (`CLAIMS`: arm -> (claim, also the search result?)): the full
    method against each arm, on ranking quality and, where the paper claims it, on the search."""
    from . import families

    if "full" not in ablation:
        return []
    rows = []
    for arm, (claim, search) in families.get(family).CLAIMS.items():
        if arm in ablation:
            rows.append(_ranking_row(claim, arm, ablation, arm, bootstrap))
            if search:
                rows.append(_search_row(claim, arm, ablation, arm))
    return rows


# ---------------------------------------------------------------------------------------- entry

def claims_table(chains: list[Chain], budgets: list[str], ablation: dict, bootstrap: int = 2000,
                 family: str = "vit", search: dict | None = None,
                 latency: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim and scope (see the module docstring), from every replicate seed's chain
    (`vitnas.results.load_chain`, with the models of every budget), the ablation's records
    (`vitnas.results.load_ablation`; empty without the study), given the space's `search`
    section the known-answer rows and, given `latency` (`vitnas.results.load_latency_vs_macs`),
    the latency-against-MACs rows."""
    from . import families

    budgets = sorted(budgets, key=parse_macs)
    per_seed = pd.concat([seed_differences(chain, budgets) for chain in chains], ignore_index=True)
    rows = seed_claim_rows(per_seed, budgets, families.get(family).BASELINE_NAME)
    if all(chain.inherited is not None for chain in chains):  # the export stage's rows
        inherited = pd.concat([inherited_differences(chain, budgets) for chain in chains], ignore_index=True)
        rows += inherited_claim_rows(inherited, budgets, per_seed)
    if latency is not None and len(latency):
        rows += latency_claim_rows(latency)
    if search is not None:
        rows = _beside_evolution_rows(rows, known_answer_rows(search, search["mode"]))
    rows += ranking_claim_rows(ablation, bootstrap, family)
    return pd.DataFrame(rows, columns=COLUMNS).astype({"n": int})


def write_claims(claims: pd.DataFrame, stem: Path, caption: str = CAPTION) -> None:
    """<stem>.csv/.md/.tex and <stem>.html (for the Snakemake report), via write_table."""
    write_table(claims, stem, caption, DECIMALS)
