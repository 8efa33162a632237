"""The results layout: where every artefact of one experiment lives, and how the tables read it back.

One function per artefact. Each takes values and returns a string, so the Snakemake rules call it
with wildcards ("{space}", "{seed}", ...) and get the pattern they declare, and every Python stage
calls it with concrete values and gets the path the rule wrote:

  results/<experiment>/                      experiment_dir: R in the rules
    data/{train,search,test}.npz, manifest.csv, held_out.txt     (prepare_data)
    detection/                               (compose_detection)
    tables/, figures/                        (families, published, search_quality)
    search_quality/{runs.csv, curves.csv, summary.{csv,md}, regret_vs_evaluations.<format>}  (search_quality)
    <space>/baselines/deit-<budget>.json     (design_baseline)
    <space>/reference/standalone[_seed<s>].csv                    (reference_seed, reference)
    <space>/seed<s>/supernet/<budget|shared>/{supernet.safetensors, train_log.csv, health.json,
                                              ranking.json, identity_prob.json}
    <space>/seed<s>/search/<budget>/{best.json, history.csv, random_history.csv}
    <space>/seed<s>/search/<budget>/{latency_versus_macs.json, latency_history.csv}  (latency_vs_macs)
    <space>/seed<s>/search/pareto/{front.csv, history.csv}            (pareto_search)
    <space>/seed<s>/retrain/<model>/{model.safetensors, model.onnx, metrics.json, train_log.csv}
    <space>/seed<s>/export/<budget>/{model.safetensors, model.onnx, metrics.json}  (export: inherited weights)
    <space>/seed<s>/transfer/<model>/coco_eval.json
    <space>/ablation/<variant>/{supernet.safetensors, train_log.csv, health.json, ranking.json, search.json}
    <space>/latency/<device-key>/table.json  (the latency table of one device fingerprint, search.constraint: latency)
    <space>/known_answer/{ranking.json, scores.csv, search.csv, switches.csv, claims.{csv,md}}, <arm>/train_log.csv
    <space>/tables/, <space>/figures/        (figures)
    <space>/replicates/{tables,figures}/     (replicates_report)
    [<space>/]logs/[seed<s>/]<job>.log, [<space>/]benchmarks/[seed<s>/]<job>.tsv

The loaders check each record's keys (the constants below) and name the file and the rule that
writes it when one is missing. Torch-free and low in the house: the standard library, pandas, `errors`
and `units` only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import ResultError
from .units import parse_macs

RESULTS = "results"  # relative to the working directory, as Snakemake runs the rules
CHECKPOINTS = "checkpoints"  # resumable progress: outside results/, never a declared output

# The keys (columns) each reader needs, per record.
HISTORY_COLUMNS = ["method", "generation", "eval_index", "macs", "params", "accuracy", "accuracy_se",
                   "window_lo", "window_hi"]
METRICS_KEYS = ["model", "kind", "budget", "top1", "params", "macs", "throughput", "throughput_device",
                "latency_torch_ms", "latency_ort_ms"]
AP_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
DETECTION_KEYS = ["model", "detector", "steps", *AP_KEYS]
SUPERNET_HEALTH_KEYS = ["budget", "usage", "warnings"]
RANKING_KEYS = ["scopes", "archs"]
SCOPE_KEYS = ["kendall_tau", "kendall_tau_ci", "spearman_rho", "spearman_rho_ci", "n_archs", "ceiling"]
ARCH_KEYS = ["index", "budget", "inherited_accuracy", "standalone_accuracy"]
ABLATION_HEALTH_KEYS = ["arm", "random_mean", "random_std"]
ABLATION_SEARCH_KEYS = ["budget", "window", "accuracy", "macs"]
# What the claims row and its table read of a latency_versus_macs.json (vitnas.latency_compare).
LATENCY_VS_MACS_KEYS = ["macs_budget", "latency_budget", "window", "macs_accuracy", "macs_measured_ms",
                        "macs_predicted_ms", "latency_accuracy", "latency_measured_ms", "latency_predicted_ms",
                        "latency_device"]
KINDS = ["evo", "deit"]  # a budget's models: the searched one, then its hand-designed baseline
INHERITED = "inh"  # the searched network with the supernet's weights, untrained (export)
# The searched network fine-tuned from those weights beside evo from scratch (retrain.compare_finetune,
# replicates target only); its top-1 is all AutoFormer's claim needs: no transfer job.
FINETUNED = "ft"
ORDER = [KINDS[0], FINETUNED, INHERITED, *KINDS[1:]]  # table order: evo, ft, inh, deit
# What a retraining cost (metrics.json; absent from records older than the keys: NaN).
TRAINING_KEYS = ["train_steps", "train_images", "train_seconds"]


# ---------------------------------------------------------------------------------------- experiment

def experiment_dir(experiment: str) -> str:
    return f"{RESULTS}/{experiment}"


def checkpoint_dir(experiment: str, space: str, stage: str) -> str:
    """A stage's checkpoint root; the stage adds a folder per config hash."""
    return f"{CHECKPOINTS}/{experiment}/{space}/{stage}"


def data_dir(root: str) -> str:
    return f"{root}/data"


def data_split(root: str, split: str) -> str:
    """train, search (the held-out split carved from train) or test."""
    return f"{data_dir(root)}/{split}.npz"


def data_manifest(root: str) -> str:
    return f"{data_dir(root)}/manifest.csv"


def held_out_list(root: str) -> str:
    """The held-out images, one id a line (for data.held_out_list of another run)."""
    return f"{data_dir(root)}/held_out.txt"


def detection_dir(root: str) -> str:
    """The composed detection set (transfer.dataset: composed)."""
    return f"{root}/detection"


def log(root: str, job: str, space: str | None = None, seed=None) -> str:
    """A job's log: [<space>/]logs/[seed<s>/]<job>.log."""
    base = root if space is None else space_dir(root, space)
    return f"{base}/logs/{job}.log" if seed is None else f"{base}/logs/seed{seed}/{job}.log"


def benchmark(root: str, job: str, space: str | None = None, seed=None) -> str:
    """A job's time and memory (Snakemake's benchmark): [<space>/]benchmarks/[seed<s>/]<job>.tsv."""
    base = f"{root if space is None else space_dir(root, space)}/benchmarks"
    return f"{base}/{job}.tsv" if seed is None else f"{base}/seed{seed}/{job}.tsv"


def report_dir(root: str, space: str | None = None, replicates: bool = False) -> str:
    """Where a report writes tables/ and figures/: the experiment (families, published), one space
    (the default run's figures) or its replicates."""
    base = root if space is None else space_dir(root, space)
    return f"{base}/replicates" if replicates else base


def tables_dir(root: str, space: str | None = None, replicates: bool = False) -> str:
    return f"{report_dir(root, space, replicates)}/tables"


def figures_dir(root: str, space: str | None = None, replicates: bool = False) -> str:
    return f"{report_dir(root, space, replicates)}/figures"


def table(root: str, name: str, ext: str, space: str | None = None, replicates: bool = False) -> str:
    return f"{tables_dir(root, space, replicates)}/{name}.{ext}"


def figure(root: str, name: str, ext: str, space: str | None = None, replicates: bool = False) -> str:
    return f"{figures_dir(root, space, replicates)}/{name}.{ext}"


def search_quality_dir(root: str) -> str:
    """The search-quality study on NAS-Bench-Macro (search_quality): runs, curves, summary, figure."""
    return f"{root}/search_quality"


def search_quality_runs(root: str) -> str:
    """One row per size, strategy, window and seed: the returned network's regret and percentile."""
    return f"{search_quality_dir(root)}/runs.csv"


def search_quality_curves(root: str) -> str:
    """Mean regret against evaluations per budget, per size, strategy and window."""
    return f"{search_quality_dir(root)}/curves.csv"


def search_quality_summary(root: str, ext: str) -> str:
    """One row per (size, window), full precision (csv) or as benchmarks/README.md shows it (md)."""
    return f"{search_quality_dir(root)}/summary.{ext}"


def search_quality_figure(root: str, ext: str) -> str:
    return f"{search_quality_dir(root)}/regret_vs_evaluations.{ext}"


# ---------------------------------------------------------------------------------------- one space

def space_dir(root: str, space: str) -> str:
    return f"{root}/{space}"


def latency_table(root: str, space: str, device_key: str) -> str:
    """The per-block latency table of a space on one device (vitnas.latency_table: the key is a
    hash of the device's fingerprint, so another device gets another table)."""
    return f"{space_dir(root, space)}/latency/{device_key}/table.json"


def baseline_arch(root: str, space: str, budget: str) -> str:
    """The hand-designed baseline of a budget (design_baseline), shared by every seed."""
    return f"{space_dir(root, space)}/baselines/deit-{budget}.json"


def reference_part(root: str, space: str, refseed) -> str:
    """The stand-alone reference trained with one seed (reference_seed)."""
    return f"{space_dir(root, space)}/reference/standalone_seed{refseed}.csv"


def reference_table(root: str, space: str) -> str:
    """Every reference seed merged (reference): what rankings are measured against."""
    return f"{space_dir(root, space)}/reference/standalone.csv"


def ablation_dir(root: str, space: str, variant: str) -> str:
    return f"{space_dir(root, space)}/ablation/{variant}"


def ablation_weights(root: str, space: str, variant: str) -> str:
    return f"{ablation_dir(root, space, variant)}/supernet.safetensors"


def ablation_train_log(root: str, space: str, variant: str) -> str:
    return f"{ablation_dir(root, space, variant)}/train_log.csv"


def ablation_health(root: str, space: str, variant: str) -> str:
    return f"{ablation_dir(root, space, variant)}/health.json"


def ablation_ranking(root: str, space: str, variant: str) -> str:
    return f"{ablation_dir(root, space, variant)}/ranking.json"


def ablation_search(root: str, space: str, variant: str) -> str:
    return f"{ablation_dir(root, space, variant)}/search.json"


def ablation_records(root: str, space: str, variants) -> list[str]:
    """Per variant its health, ranking and search records: what the ablation table reads."""
    return [f(root, space, v) for v in variants for f in (ablation_health, ablation_ranking, ablation_search)]


# ---------------------------------------------------------------------------------------- one seed's chain

KNOWN_ANSWER_FILES = ("ranking.json", "scores.csv", "search.csv", "switches.csv", "claims.csv", "claims.md")


def known_answer_dir(root: str, space: str) -> str:
    """The known-answer study of a space (rule known_answer; known_answer.space)."""
    return f"{space_dir(root, space)}/known_answer"


def known_answer_file(root: str, space: str, name: str) -> str:
    return f"{known_answer_dir(root, space)}/{name}"


def chain_dir(root: str, space: str, seed) -> str:
    """One replicate of the chain supernet -> search -> retrain -> transfer."""
    return f"{space_dir(root, space)}/seed{seed}"


def supernet_dir(root: str, space: str, seed, supernet: str) -> str:
    """`supernet`: the budget it was trained for, or "shared" by every budget."""
    return f"{chain_dir(root, space, seed)}/supernet/{supernet}"


def supernet_weights(root: str, space: str, seed, supernet: str) -> str:
    return f"{supernet_dir(root, space, seed, supernet)}/supernet.safetensors"


def supernet_train_log(root: str, space: str, seed, supernet: str) -> str:
    return f"{supernet_dir(root, space, seed, supernet)}/train_log.csv"


def supernet_health(root: str, space: str, seed, supernet: str) -> str:
    return f"{supernet_dir(root, space, seed, supernet)}/health.json"


def supernet_ranking(root: str, space: str, seed, supernet: str) -> str:
    return f"{supernet_dir(root, space, seed, supernet)}/ranking.json"


def supernet_identity_prob(root: str, space: str, seed, supernet: str) -> str:
    """How sub-networks were drawn; train_supernet writes it beside health.json (not declared)."""
    return f"{supernet_dir(root, space, seed, supernet)}/identity_prob.json"


def search_dir(root: str, space: str, seed, budget: str) -> str:
    return f"{chain_dir(root, space, seed)}/search/{budget}"


def search_best(root: str, space: str, seed, budget: str) -> str:
    """The evolved architecture of a budget."""
    return f"{search_dir(root, space, seed, budget)}/best.json"


def search_history(root: str, space: str, seed, budget: str) -> str:
    """Every candidate evolution evaluated."""
    return f"{search_dir(root, space, seed, budget)}/history.csv"


def random_history(root: str, space: str, seed, budget: str) -> str:
    """Every candidate random search evaluated (the baseline search)."""
    return f"{search_dir(root, space, seed, budget)}/random_history.csv"


def latency_vs_macs(root: str, space: str, seed, budget: str) -> str:
    """The MACs pick of `budget` against a latency search under its predicted latency, both picks'
    held-out top-1 and predicted and measured latency (latency_vs_macs); the name
    vitnas.latency_compare writes in the budget's search folder."""
    return f"{search_dir(root, space, seed, budget)}/latency_versus_macs.json"


def latency_vs_macs_history(root: str, space: str, seed, budget: str) -> str:
    """Every candidate the latency search of latency_vs_macs evaluated."""
    return f"{search_dir(root, space, seed, budget)}/latency_history.csv"


def pareto_dir(root: str, space: str, seed) -> str:
    """The one Pareto search of a seed (search.mode: pareto), beside the budgets' folders."""
    return f"{chain_dir(root, space, seed)}/search/pareto"


def pareto_front(root: str, space: str, seed) -> str:
    """The non-dominated evaluated networks (accuracy against MACs), cheapest first."""
    return f"{pareto_dir(root, space, seed)}/front.csv"


def pareto_history(root: str, space: str, seed) -> str:
    """Every candidate the Pareto search evaluated, over the range every budget's window spans."""
    return f"{pareto_dir(root, space, seed)}/history.csv"


def retrain_dir(root: str, space: str, seed, model: str) -> str:
    return f"{chain_dir(root, space, seed)}/retrain/{model}"


def retrain_weights(root: str, space: str, seed, model: str) -> str:
    return f"{retrain_dir(root, space, seed, model)}/model.safetensors"


def retrain_onnx(root: str, space: str, seed, model: str) -> str:
    """The retrained model as ONNX (dynamic batch axis), checked by onnxruntime."""
    return f"{retrain_dir(root, space, seed, model)}/model.onnx"


def retrain_metrics(root: str, space: str, seed, model: str) -> str:
    return f"{retrain_dir(root, space, seed, model)}/metrics.json"


def retrain_train_log(root: str, space: str, seed, model: str) -> str:
    return f"{retrain_dir(root, space, seed, model)}/train_log.csv"


def export_dir(root: str, space: str, seed, budget: str) -> str:
    """The searched network of a budget with the supernet's inherited weights (export)."""
    return f"{chain_dir(root, space, seed)}/export/{budget}"


def export_weights(root: str, space: str, seed, budget: str) -> str:
    """Safetensors with the architecture in its metadata, as retrain writes (model_file.load_model reads both)."""
    return f"{export_dir(root, space, seed, budget)}/model.safetensors"


def export_onnx(root: str, space: str, seed, budget: str) -> str:
    """The export as ONNX (dynamic batch axis), checked by onnxruntime, as retrain writes it."""
    return f"{export_dir(root, space, seed, budget)}/model.onnx"


def export_metrics(root: str, space: str, seed, budget: str) -> str:
    """Test top-1, params, MACs, throughput of the untrained export: retrain's metrics.json keys."""
    return f"{export_dir(root, space, seed, budget)}/metrics.json"


def inherited_model(budget: str) -> str:
    """The models table's name of a budget's export."""
    return f"{INHERITED}-{budget}"


def coco_eval(root: str, space: str, seed, model: str) -> str:
    """A retrained backbone's COCO box APs in a detector (transfer)."""
    return f"{chain_dir(root, space, seed)}/transfer/{model}/coco_eval.json"


def transferred(models: list[str]) -> list[str]:
    """The models with a transfer job: all but the fine-tuned comparison models."""
    return [m for m in models if not m.startswith(f"{FINETUNED}-")]


def chain_records(root: str, space: str, seed, budgets, supernets, models,
                  latency_budgets=()) -> dict[str, list[str]]:
    """What one replicate of the chain gives the tables, by kind (the figures rules' inputs);
    `latency_budgets`: search.latency_vs_macs."""
    return {
        "health": [supernet_health(root, space, seed, sn) for sn in supernets],
        "ranking": [supernet_ranking(root, space, seed, sn) for sn in supernets],
        "evolution": [search_history(root, space, seed, b) for b in budgets],
        "random": [random_history(root, space, seed, b) for b in budgets],
        "metrics": [retrain_metrics(root, space, seed, m) for m in models],
        "inherited": [export_metrics(root, space, seed, b) for b in budgets],
        "detection": [coco_eval(root, space, seed, m) for m in transferred(models)],
        "latency_vs_macs": [latency_vs_macs(root, space, seed, b) for b in latency_budgets],
    }


# ---------------------------------------------------------------------------------------- reading

def _require(path, rule: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; it is made by the '{rule}' rule, run that first")
    return path


def _check_keys(found, needed, path, rule: str) -> None:
    missing = [k for k in needed if k not in found]
    if missing:
        raise ResultError(f"{path} lacks {', '.join(missing)}; it is made by the '{rule}' rule, run that "
                          f"again (snakemake --forcerun {rule})")


def read_record(path, rule: str, keys: list[str]) -> dict:
    """The whole JSON record that `rule` wrote, after checking it has `keys` (JSON NaN reads as
    float NaN)."""
    with open(_require(path, rule)) as f:
        record = json.load(f)
    _check_keys(record, keys, path, rule)
    return record


def _read_keys(path, rule: str, keys: list[str]) -> dict:
    record = read_record(path, rule, keys)
    return {k: record[k] for k in keys}


def _read_history(path, rule: str, budget: str) -> pd.DataFrame:
    df = pd.read_csv(_require(path, rule))
    _check_keys(df.columns, HISTORY_COLUMNS, path, rule)
    # The folder name is the budget the Snakefile asked for; trust it over the column's dtype guess.
    return df.assign(budget=budget, budget_macs=parse_macs(budget))


def _read_ranking(path, rule: str) -> dict:
    record = read_record(path, rule, RANKING_KEYS)
    _check_keys(record["scopes"], ["all"], path, rule)
    for scope in record["scopes"].values():
        _check_keys(scope, SCOPE_KEYS, path, rule)
    for arch in record["archs"]:  # the paired tau differences match and score these
        _check_keys(arch, ARCH_KEYS, path, rule)
    return record


def by_budget_then_kind(df: pd.DataFrame) -> pd.DataFrame:
    """Budgets in MACs order (a string sort puts '10M' before '2M'); the found model before its baseline."""
    order = df.assign(_macs=df["budget"].map(parse_macs),
                      _kind=df["kind"].map({k: i for i, k in enumerate(ORDER)}).fillna(len(ORDER)))
    return order.sort_values(["_macs", "_kind", "model"], kind="stable").drop(columns=["_macs", "_kind"])


def load_histories(root: str, space: str, seed, budgets: list[str]) -> pd.DataFrame:
    """Every candidate evaluated by evolution and by random search, for every budget, in one frame."""
    frames = []
    for budget in budgets:
        frames.append(_read_history(search_history(root, space, seed, budget), "search", budget))
        frames.append(_read_history(random_history(root, space, seed, budget), "random_search", budget))
    return pd.concat(frames, ignore_index=True)


def load_pareto_history(root: str, space: str, seed) -> pd.DataFrame:
    """Every candidate the Pareto search evaluated (search.mode: pareto)."""
    path = pareto_history(root, space, seed)
    df = pd.read_csv(_require(path, "pareto_search"))
    _check_keys(df.columns, HISTORY_COLUMNS, path, "pareto_search")
    return df


def load_metrics_record(root: str, space: str, seed, model: str) -> dict:
    """One retrained model's whole metrics.json (its arch and test images included)."""
    return read_record(retrain_metrics(root, space, seed, model), "retrain", METRICS_KEYS)


def load_detection_record(root: str, space: str, seed, model: str) -> dict:
    """One model's whole coco_eval.json."""
    return read_record(coco_eval(root, space, seed, model), "transfer", DETECTION_KEYS)


def load_metrics(root: str, space: str, seed, models: list[str]) -> pd.DataFrame:
    """One row per retrained model (its metrics.json without the arch; `init`: scratch or inherited,
    scratch for records from before the key; TRAINING_KEYS, NaN where absent), sorted by budget then
    kind."""
    rows = []
    for m in models:
        record = read_record(retrain_metrics(root, space, seed, m), "retrain", METRICS_KEYS)
        rows.append({k: record[k] for k in METRICS_KEYS} | {"init": record.get("init", "scratch")}
                    | {k: record.get(k, float("nan")) for k in TRAINING_KEYS})
    frame = pd.DataFrame(rows, columns=METRICS_KEYS + ["init"] + TRAINING_KEYS)
    return by_budget_then_kind(frame).reset_index(drop=True)


def load_inherited(root: str, space: str, seed, budgets: list[str]) -> pd.DataFrame:
    """One row per budget's export (the searched network, inherited weights, no training), with
    the metrics columns of `load_metrics` plus `init`."""
    rows = [_read_keys(export_metrics(root, space, seed, b), "export", METRICS_KEYS + ["init"]) for b in budgets]
    return by_budget_then_kind(pd.DataFrame(rows, columns=METRICS_KEYS + ["init"])).reset_index(drop=True)


def load_detection(root: str, space: str, seed, models: list[str]) -> pd.DataFrame:
    """One row per model: its COCO box APs, with null (no objects in that size range) as NaN."""
    rows = [_read_keys(coco_eval(root, space, seed, m), "transfer", DETECTION_KEYS) for m in models]
    df = pd.DataFrame(rows, columns=DETECTION_KEYS)
    aps = df[AP_KEYS].astype(float)
    df[AP_KEYS] = aps.where(aps >= 0)  # raw COCOeval writes -1 for "no objects"; same meaning as null
    return df


def load_known_claims(root: str, space: str) -> pd.DataFrame:
    """The known-answer study's claim rows (rule known_answer), in the claims table's columns."""
    path = _require(known_answer_file(root, space, "claims.csv"), "known_answer")
    return pd.read_csv(path)


def load_latency_vs_macs(root: str, space: str, seeds, budgets: list[str]) -> pd.DataFrame:
    """One row per seed and listed MACs budget (search.latency_vs_macs): the record's keys and the
    seed, what `claims.latency_claim_rows` averages."""
    rows = [_read_keys(latency_vs_macs(root, space, seed, b), "latency_vs_macs", LATENCY_VS_MACS_KEYS)
            | {"seed": seed} for seed in seeds for b in budgets]
    return pd.DataFrame(rows, columns=["seed", *LATENCY_VS_MACS_KEYS])


def supernet_order(supernets: list[str]) -> list[str]:
    """Per-budget supernets in MACs order, the shared one last."""
    return sorted(supernets, key=lambda sn: (sn == "shared", 0 if sn == "shared" else parse_macs(sn)))


def load_supernets(root: str, space: str, seed, supernets: list[str]) -> dict:
    """Per supernet ("shared" or a budget): its health.json and ranking.json records."""
    return {sn: {"health": read_record(supernet_health(root, space, seed, sn), "train_supernet",
                                       SUPERNET_HEALTH_KEYS),
                 "ranking": _read_ranking(supernet_ranking(root, space, seed, sn), "ranking")}
            for sn in supernet_order(supernets)}


def load_ablation(root: str, space: str, variants: list[str]) -> dict:
    """Per ablation variant, its health, ranking and search records."""
    return {v: {"health": read_record(ablation_health(root, space, v), "ablation_supernet", ABLATION_HEALTH_KEYS),
                "ranking": _read_ranking(ablation_ranking(root, space, v), "ablation_ranking"),
                "search": read_record(ablation_search(root, space, v), "ablation_search", ABLATION_SEARCH_KEYS)}
            for v in variants}


@dataclass(frozen=True, eq=False)  # frames do not compare to one truth value
class Chain:
    """What the tables read of one replicate seed's chain, loaded once."""
    seed: int
    histories: pd.DataFrame  # every evaluated candidate, evolution and random, every budget
    metrics: pd.DataFrame  # one row per retrained model
    detection: pd.DataFrame  # one row per transferred model's COCO evaluation (no ft)
    supernets: dict  # per supernet its health and ranking records (empty unless asked for)
    inherited: pd.DataFrame | None = None  # one row per budget's export (None: not loaded)


def load_chain(root: str, space: str, seed: int, budgets: list[str], models: list[str],
               supernets: list[str] = ()) -> Chain:
    return Chain(seed, load_histories(root, space, seed, budgets), load_metrics(root, space, seed, models),
                 load_detection(root, space, seed, transferred(models)),
                 load_supernets(root, space, seed, list(supernets)),
                 load_inherited(root, space, seed, budgets))
