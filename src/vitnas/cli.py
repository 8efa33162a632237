"""`vitnas <stage>`: every pipeline stage as a command, so each runs with or without Snakemake.

Each stage takes `--config` (YAML files and/or inline JSON, merged left to right, validated against
the schema with defaults filled) plus the paths it reads and writes. Known failures (bad config,
missing data, impossible budget, interrupted training) print one line and exit 1; no traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import config as configuration
from .errors import ConfigError, VitnasError

EXPECTED_ERRORS = (VitnasError, FileNotFoundError)  # printed as one line; anything else is a bug


def _checkpoints(args, cfg, stage: str) -> Path:
    """The stage's checkpoint folder: keyed by the sections its training depends on
    (vitnas.config.CHECKPOINT_SECTIONS), so a changed config starts fresh."""
    return Path(args.checkpoints) / configuration.checkpoint_hash(cfg, stage)


# ------------------------------------------------------------------------------------- stages
def cmd_check_config(args, cfg):
    from .checks import check_data, check_experiment, space_configs
    from .data import check_source
    from .families import build_space
    from .spaces import format_macs

    check_experiment(cfg)
    if not args.skip_data:  # the data root, as the Snakefile checks it before a run
        check_source(cfg)
        sizes = check_data(cfg)
        print(f"data OK: {cfg['data']['root']} ({cfg['data']['dataset']}): " +
              ", ".join(f"{k} {v}" for k, v in sizes.items()) + " images")
    for scfg in space_configs(cfg):
        lo, hi = build_space(scfg).macs_range()
        print(f"config OK: experiment {cfg['experiment']}, space {scfg['space_name']} ({scfg['space']['family']}) "
              f"MACs range [{format_macs(lo)}, {format_macs(hi)}], budgets {', '.join(scfg['search']['budgets'])}")


def cmd_prepare_data(args, cfg):
    from .data import prepare

    manifest = prepare(cfg, args.out)
    counts = manifest.groupby("split").size().to_dict()
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def cmd_train_supernet(args, cfg):
    from .engine import set_threads
    from .supernet import train as supernet_train

    set_threads(args.threads)
    budget = args.budget
    if budget:
        from .families import build_space
        from .spaces import parse_macs

        build_space(cfg).check_budget(budget, parse_macs(budget))
    ckpt = _checkpoints(args, cfg, "train_supernet") / (budget or "shared")
    report = supernet_train.run(cfg, args.data, args.weights, args.train_log, args.health, ckpt, budget)
    if report:  # rank 0 (or the only process)
        print(f"supernet {report['budget']} held-out top-1: smallest {report['smallest']:.2f}, largest "
              f"{report['largest']:.2f}, random {report['random_mean']:.2f} ± {report['random_std']:.2f}; "
              f"{len(report['warnings'])} usage warning(s)")


def cmd_search(args, cfg):
    from .engine import set_threads
    from .search import run

    set_threads(args.threads)
    best = run(cfg, args.method, args.budget, args.data, args.supernet, args.history, args.best,
               _checkpoints(args, cfg, "search"))
    print(f"{args.method} {args.budget}: best held-out top-1 {best['accuracy']:.2f} at "
          f"{best['macs'] / 1e6:.3f} M MACs")
    if "measured_latency_ms" in best:
        print(f"latency on {best['latency_device']}: predicted {best['latency_ms']:.3f} ms, measured "
              f"{best['measured_latency_ms']:.3f} ms")


def cmd_latency_vs_macs(args, cfg):
    from .engine import set_threads
    from .latency_compare import run

    set_threads(args.threads)
    r = run(cfg, args.budget, args.data, args.supernet, args.best, args.out, _checkpoints(args, cfg, "search"))
    print(f"{r['macs_budget']} vs {r['latency_budget']} on {r['latency_device']}: MACs pick held-out top-1 "
          f"{r['macs_accuracy']:.2f}, {r['macs_predicted_ms']:.3f} ms predicted, {r['macs_measured_ms']:.3f} ms "
          f"measured; latency pick {r['latency_accuracy']:.2f}, {r['latency_predicted_ms']:.3f} ms predicted, "
          f"{r['latency_measured_ms']:.3f} ms measured")


def cmd_pareto_search(args, cfg):
    from .engine import set_threads
    from .pareto import run_pareto

    budgets = cfg["search"]["budgets"]
    if not len(args.best) == len(args.budget_history) == len(budgets):
        raise ConfigError(f"pareto-search: --best and --budget-history need one file per budget of "
                          f"search.budgets ({', '.join(budgets)}), in that order")
    set_threads(args.threads)
    picks = run_pareto(cfg, args.data, args.supernet, args.front, args.history,
                       dict(zip(budgets, zip(args.budget_history, args.best))),
                       _checkpoints(args, cfg, "search"))
    for budget, best in picks.items():
        print(f"pareto {budget}: best held-out top-1 {best['accuracy']:.2f} at {best['macs'] / 1e6:.3f} M MACs")


def cmd_design_baseline(args, cfg):
    from .families import build_space, design_baseline
    from .io import write_json

    space = build_space(cfg)
    arch = design_baseline(cfg, space, args.budget)
    write_json(args.out, arch.to_dict())
    widths = "/".join(str(s.embed) for s in arch.stages)
    print(f"{space.family} baseline for {args.budget}: width {widths}, depth {arch.depth}, "
          f"{space.macs(arch) / 1e6:.3f} M MACs")


def cmd_retrain(args, cfg):
    from .engine import set_threads
    from .retrain import run

    set_threads(args.threads)
    ckpt = _checkpoints(args, cfg, "retrain") / args.model
    if args.init:
        from .retrain import init_key

        ckpt = ckpt / init_key(args.init)
    m = run(cfg, args.model, args.arch, args.data, args.weights, args.metrics, args.train_log, ckpt,
            args.threads, args.onnx, args.init)
    if m:  # rank 0 (or the only process)
        print(f"{args.model}: test top-1 {m['top1']:.2f}, {m['params'] / 1e6:.3f} M params, "
              f"{m['macs'] / 1e6:.3f} M MACs, {m['throughput']:.0f} img/s ({m['init']}), batch-1 latency "
              f"{m['latency_torch_ms']:.3f} ms (torch) / {m['latency_ort_ms']:.3f} ms (onnxruntime); "
              f"ONNX by {m['onnx']['exporter']}, opset {m['onnx']['opset']}, "
              f"max |ort - torch| {m['onnx']['max_abs_diff']:.2g}")


def cmd_export(args, cfg):
    from .engine import set_threads
    from .export import run

    set_threads(args.threads)
    m = run(cfg, args.budget, args.arch, args.supernet, args.data, args.weights, args.metrics, args.threads,
            args.onnx)
    print(f"{m['model']}: inherited weights, test top-1 {m['top1']:.2f} without training, "
          f"{m['params'] / 1e6:.3f} M params, {m['macs'] / 1e6:.3f} M MACs, {m['throughput']:.0f} img/s, "
          f"batch-1 latency {m['latency_torch_ms']:.3f} ms (torch) / {m['latency_ort_ms']:.3f} ms (onnxruntime)")


def cmd_compose_detection(args, cfg):
    from .detection.compose import run

    for split, n, objects in run(cfg, args.data, args.out):
        print(f"wrote {n} {split} canvases with {objects} objects to {args.out}")


def cmd_transfer(args, cfg):
    from .detection.finetune import run

    result = run(cfg, args.model, args.name, args.detection, args.out,
                 _checkpoints(args, cfg, "transfer") / args.name, args.threads)
    if result:  # rank 0 (or the only process)
        print(f"{args.name}: AP {result['AP']:.2f}, AP50 {result['AP50']:.2f}")


def cmd_reference(args, cfg):
    from .engine import set_threads
    from .reference import merge, run, training_seeds

    if args.merge:
        df = merge(args.merge, args.out)
    else:
        if not (args.data and args.checkpoints):
            raise ConfigError("reference: training needs --data and --checkpoints (or give --merge)")
        seeds = training_seeds(cfg) if args.train_seed is None else [args.train_seed]
        set_threads(args.threads)
        df = run(cfg, args.data, args.out, _checkpoints(args, cfg, "reference"), seeds)
    print(f"wrote {args.out}: {df['index'].nunique()} architectures x {df['seed'].nunique()} seeds, "
          f"stand-alone held-out top-1 {df['accuracy'].min():.2f} to {df['accuracy'].max():.2f}")


def cmd_ranking(args, cfg):
    from .ranking import run

    result = run(cfg, args.data, args.supernet, args.reference, args.budget, args.out, args.threads)
    for scope, r in result["scopes"].items():
        lo, hi = r["kendall_tau_ci"]
        print(f"supernet {result['budget']}, {scope} ({r['n_archs']} archs): Kendall tau {r['kendall_tau']:.3f} "
              f"[{lo:.3f}, {hi:.3f}], ceiling {r['ceiling']['kendall_tau']:.3f}")


def cmd_ablation_variant(args, cfg):
    from .ablation import run_variant
    from .variants import check_variant
    from .engine import set_threads

    check_variant(cfg["space"]["family"], args.variant)
    if args.ranking and not args.reference:
        raise ConfigError("ablation-variant: --ranking needs --reference (made by the reference stage)")
    if args.train_log and not args.checkpoints:
        raise ConfigError("ablation-variant: --train-log (training) needs --checkpoints")
    set_threads(args.threads)
    done = run_variant(cfg, args.variant, args.data, args.supernet, args.train_log, args.health,
                       args.reference, args.ranking, args.search,
                       _checkpoints(args, cfg, "ablation") / args.variant if args.checkpoints else None)
    if "health" in done:
        h = done["health"]
        print(f"{args.variant}: held-out top-1 smallest {h['smallest']:.2f}, largest {h['largest']:.2f}, "
              f"random {h['random_mean']:.2f} ± {h['random_std']:.2f}; {h['loss_spikes']} loss spikes")
    if "ranking" in done:
        r = done["ranking"]["scopes"]["all"]
        print(f"{args.variant}: Kendall tau {r['kendall_tau']:.3f} {r['kendall_tau_ci']}, "
              f"Spearman rho {r['spearman_rho']:.3f}")
    if "search" in done:
        b = done["search"]
        print(f"{args.variant}: search {b['budget']} best held-out top-1 {b['accuracy']:.2f} at "
              f"{b['macs'] / 1e6:.3f} M MACs")


def cmd_known_answer(args, cfg):
    from .known_answer import run

    result = run(cfg, args.data, args.out, Path(args.checkpoints), args.threads)  # keyed per arm inside
    full = result["arms"][next(iter(result["arms"]))]["ranking"]["all"]
    print(f"{result['networks']} networks: Kendall tau supernet {full['supernet']['kendall_tau']:.3f}, FLOPs "
          f"{full['flops']['kendall_tau']:.3f}, ceiling {full['ceiling']['kendall_tau']:.3f}; written to {args.out}")


def _results_root(args, cfg) -> str:
    """The experiment's results folder: --results, else where the rules wrote (vitnas.results)."""
    from . import results

    return args.results or results.experiment_dir(cfg["experiment"])


def cmd_figures(args, cfg):
    from . import results
    from .report import make_replicates_report, make_report
    from .variants import selected_variants

    root, fig, budgets, space = _results_root(args, cfg), cfg["figures"], cfg["search"]["budgets"], cfg["space_name"]
    variants = selected_variants(cfg) if cfg["ablation"]["enabled"] else ()
    models = configuration.model_names(cfg, replicates=bool(args.replicates))
    if args.replicates:  # the replicates target always runs the ablation: its claims need it
        seeds = [int(s) for s in args.replicates.split(",")]
        make_replicates_report(root, space, budgets, models, seeds, ablation_variants=selected_variants(cfg),
                               bootstrap=cfg["reference"]["bootstrap"], formats=fig["formats"], dpi=fig["dpi"],
                               family=cfg["space"]["family"], search=cfg["search"],
                               latency_budgets=cfg["search"]["latency_vs_macs"])
        print(f"replicate tables ({len(seeds)} seeds) in {results.tables_dir(root, space, replicates=True)}")
        return
    supernets = budgets if cfg["supernet"]["per_budget"] else ["shared"]
    make_report(root, space, budgets, models, cfg["seed"], supernets, formats=fig["formats"], dpi=fig["dpi"],
                ablation_variants=variants, bootstrap=cfg["reference"]["bootstrap"], family=cfg["space"]["family"],
                search=cfg["search"], known_answer=cfg["known_answer"]["space"] == space,
                latency_budgets=cfg["search"]["latency_vs_macs"])
    print(f"tables in {results.tables_dir(root, space)}, figures in {results.figures_dir(root, space)}")


def cmd_pareto_figure(args, cfg):
    from . import results
    from .report import make_pareto_figure
    from .spaces import window

    root, fig, space = _results_root(args, cfg), cfg["figures"], cfg["space_name"]
    make_pareto_figure(root, space, cfg["seed"], {b: window(cfg, b) for b in cfg["search"]["budgets"]},
                       fig["formats"], fig["dpi"])
    print(f"pareto_front in {results.figures_dir(root, space)}")


def cmd_search_quality(args, cfg):
    from . import results
    from .search_quality_report import make_search_quality_report

    root, sq, fig = _results_root(args, cfg), cfg["search_quality"], cfg["figures"]
    make_search_quality_report(root, cfg["search"], sq["sizes"], sq["seeds"], fig["formats"], fig["dpi"])
    print(f"search quality in {results.search_quality_dir(root)}, its table in {results.tables_dir(root)}")


def cmd_families(args, cfg):
    from . import results
    from .report import make_families_report

    spaces = {}
    for name in configuration.active_spaces(cfg):
        scfg = configuration.for_space(cfg, name)
        spaces[name] = (scfg["space"]["family"], configuration.model_names(scfg), scfg["search"]["budgets"])
    root, fig = _results_root(args, cfg), cfg["figures"]
    make_families_report(root, spaces, cfg["seed"], fig["formats"], fig["dpi"])
    print(f"families table in {results.tables_dir(root)}, figures in {results.figures_dir(root)}")


def cmd_published(args, cfg):
    from . import results
    from .report import make_published_report

    root = _results_root(args, cfg)
    rows = make_published_report(root, cfg, args.references, args.threads)
    matched = rows["reproduced model"].dropna().nunique()
    timed = (rows["_metric"] == "latency").sum()
    print(f"published table ({rows['published model'].nunique()} published models, {matched} reproduced "
          f"model(s) matched, {timed} latency row(s) measured here) in {results.tables_dir(root)}, its "
          f"figure in {results.figures_dir(root)}")


def cmd_plan(args, cfg):
    import json

    from .plan import device_rate, format_plan, per_rule, plan

    rate, device = device_rate(args.gpu, args.mfu, args.cpu_gflops)  # a bad device stops before planning
    planned, sizes = plan(cfg, replicates=args.replicates, data_dir=args.data)
    table = per_rule(planned, rate)
    if args.json:
        print(json.dumps({"experiment": cfg["experiment"], "device": device, "flops_per_s": rate, **sizes,
                          "rules": table.to_dict("records"), "jobs": [vars(j) for j in planned]}))
        return
    print(format_plan(table, cfg["experiment"], device, sizes, "CPU-hours" if args.cpu_gflops else "GPU-hours"))


def cmd_make_fixtures(args, cfg):
    from .detection.fixture import write_tiny_coco
    from .fixtures import write_tiny_imagenet

    out = Path(args.out)
    tree = write_tiny_imagenet(out / "imagenet", classes=args.classes, seed=args.seed or 0)
    write_tiny_coco(out / "coco", seed=args.seed or 0)
    print(f"wrote {out / 'imagenet'} ({len(tree['classes'])} classes, {tree['train']} train images, one of them "
          f"corrupt, {tree['val']} val) and {out / 'coco'} (COCO 2017 layout); point data.root and "
          "transfer.root at them (tests/config/fixtures.yaml)")


def cmd_show_arch(args, cfg):
    import json

    from .arch import Arch
    from .families import count
    from .spaces import data_info

    try:
        arch = Arch.load(args.file)
    except ValueError as e:
        raise ConfigError(f"show-arch: {e}; pass an architecture JSON such as config/archs/deit-tiny.json") from None
    # The input it was designed for: the file's own "input" (the published architectures in
    # config/archs carry theirs), else the config's data set.
    info = data_info(cfg["data"])
    inp = {"img_size": cfg["data"]["img_size"] or info["img_size"], "in_chans": info["in_chans"],
           "num_classes": info["num_classes"]} | json.loads(Path(args.file).read_text()).get("input", {})
    counted = count(arch, inp["img_size"], inp["in_chans"], inp["num_classes"], args.convention)
    if args.json:
        print(json.dumps(counted))
        return
    print(f"{args.file}: {arch.family}, patch {arch.patch}, {len(arch.stages)} stage(s), depth {arch.depth}; "
          f"{counted['macs'] / 1e6:.3f} M MACs ({args.convention} convention), {counted['params'] / 1e6:.3f} M "
          f"params at {inp['img_size']} px, {inp['in_chans']} channel(s), {inp['num_classes']} classes")
    print(f"{'stage':>5} {'embed':>5} {'layer':>5} {'kind':>8} {'heads':>5} {'qkv':>5} {'mlp':>5}")
    for s, stage in enumerate(arch.stages):
        for i, layer in enumerate(stage.layers):
            kind = "identity" if layer.identity else "block"
            dims = ("-", "-", "-") if layer.identity else (layer.heads, layer.qkv, layer.mlp)
            print(f"{s:>5} {stage.embed:>5} {i:>5} {kind:>8} {dims[0]:>5} {dims[1]:>5} {dims[2]:>5}")


# ------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitnas", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    def stage(name, func, help, *args, space: bool = True):
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", nargs="+", default=["config/config.yaml"], metavar="FILE|JSON",
                       help="config files or inline JSON, merged left to right (default: %(default)s)")
        p.add_argument("--seed", type=int, help="override the config's seed (one replicate of the chain)")
        if space:
            p.add_argument("--space", help="which of the config's `spaces` (needed when it has several)")
        p.set_defaults(needs_space=space)
        for flag, kw in args:
            p.add_argument(flag, **kw)
        p.set_defaults(func=func)

    req = lambda h, **kw: {"required": True, "help": h, **kw}
    threads = ("--threads", {"type": int, "default": 1, "help": "CPU threads (default: 1)"})
    ckpt = ("--checkpoints", req("checkpoint root; a subfolder per config hash is used"))
    data = ("--data", req("folder with the prepared splits (<split>.npz)"))
    stage("check-config", cmd_check_config, "validate a config, its budgets and its data (the root, and that "
          "every batch fits the training split); print each space's MACs range",
          ("--skip-data", {"action": "store_true", "help": "check the config only (no data set on this machine)"}),
          space=False)
    stage("prepare-data", cmd_prepare_data, "read the raw data set, write train/search/test splits",
          ("--out", req("output folder")), space=False)
    stage("train-supernet", cmd_train_supernet, "train the weight-sharing supernet of one budget", data,
          ("--budget", {"help": "the budget it serves (sampling tuned to its window); omit for one "
                                "supernet shared by every budget"}),
          ("--weights", req("output .safetensors")), ("--train-log", req("output train_log.csv")),
          ("--health", req("output health.json")), ckpt, threads)
    stage("search", cmd_search, "evolutionary or random search under one MACs budget", data,
          ("--method", {"choices": ["evolution", "random"], "default": "evolution",
                        "help": "search method (default: evolution)"}),
          ("--budget", req("MACs budget such as 4M or 1.3G")),
          ("--supernet", req("trained supernet .safetensors")),
          ("--history", req("output CSV of every evaluated candidate")),
          ("--best", {"help": "output JSON of the best architecture"}), ckpt, threads)
    stage("latency-vs-macs", cmd_latency_vs_macs, "search the same supernet under a MACs search's pick's latency "
          "(predicted by search.latency's device table), then time both picks on that device; both picks' "
          "held-out top-1 and predicted and measured latency (search.latency_vs_macs)", data,
          ("--budget", req("the MACs budget the pick was searched under, such as 4M")),
          ("--supernet", req("the supernet .safetensors that search read")),
          ("--best", req("that search's best.json")),
          ("--out", req("output folder: latency_versus_macs.json and the latency search's latency_history.csv")),
          ckpt, threads)
    stage("pareto-search", cmd_pareto_search, "one NSGA-II search (accuracy against MACs) for every budget "
          "(search.mode: pareto); each budget takes the best front member in its window", data,
          ("--supernet", req("the shared supernet .safetensors")),
          ("--front", req("output CSV of the non-dominated networks")),
          ("--history", req("output CSV of every evaluated candidate")),
          ("--best", req("output JSON of each budget's pick, in search.budgets order", nargs="+")),
          ("--budget-history", req("output CSV of each budget's in-window candidates, in search.budgets "
                                   "order", nargs="+")), ckpt, threads)
    stage("design-baseline", cmd_design_baseline, "the DeiT-style baseline of matching MACs",
          ("--budget", req("MACs budget such as 4M or 1.3G")), ("--out", req("output arch JSON")))
    stage("retrain", cmd_retrain, "train one architecture from scratch (or fine-tune it from --init) and "
          "measure it", data,
          ("--model", req("model name, <kind>-<budget>")), ("--arch", req("architecture JSON")),
          ("--weights", req("output .safetensors")), ("--onnx", req("output model.onnx")),
          ("--metrics", req("output metrics.json")),
          ("--train-log", req("output train_log.csv")),
          ("--init", {"help": "start from these weights (the export stage's model.safetensors) with the "
                              "retrain.finetune recipe; omit to train from scratch"}), ckpt, threads)
    stage("export", cmd_export, "write a searched network with the supernet's inherited weights (no "
          "training) as safetensors and ONNX, and score and time it on the test split", data,
          ("--budget", req("the budget it was searched under, such as 4M")),
          ("--arch", req("the searched architecture JSON (best.json)")),
          ("--supernet", req("the supernet .safetensors it was searched in")),
          ("--weights", req("output .safetensors")), ("--onnx", req("output model.onnx")),
          ("--metrics", req("output metrics.json")), threads)
    stage("compose-detection", cmd_compose_detection,
          "compose a COCO-format detection set from the classification images", data,
          ("--out", req("output folder (PNG images + instances_<split>.json)")), space=False)
    stage("transfer", cmd_transfer, "fine-tune a detector on a retrained backbone, COCO-evaluate it",
          ("--model", req("retrained model .safetensors")), ("--name", req("model name")),
          ("--detection", {"help": "folder made by compose-detection (transfer.dataset: composed; "
                                   "coco reads transfer.root)"}), ("--out", req("output coco_eval.json")),
          ckpt, threads)
    stage("reference", cmd_reference,
          "train the reference architectures stand-alone (several seeds), score them on the held-out split",
          ("--data", {"help": "folder with the prepared splits (<split>.npz)"}),
          ("--train-seed", {"type": int, "help": "train with this one seed only (default: every reference seed)"}),
          ("--merge", {"nargs": "+", "metavar": "CSV", "help": "instead of training, merge per-seed tables"}),
          ("--out", req("output CSV")), ("--checkpoints", {"help": "checkpoint root (for training)"}), threads)
    stage("ranking", cmd_ranking,
          "ranking quality of a supernet against the reference: Kendall tau, Spearman rho, intervals, ceiling",
          data, ("--supernet", req("trained supernet .safetensors")),
          ("--reference", req("standalone.csv made by the reference stage")),
          ("--budget", {"help": "the supernet's budget (also scores its own window); omit for a shared supernet"}),
          ("--out", req("output ranking.json")), threads)
    stage("ablation-variant", cmd_ablation_variant,
          "ablation: train one variant's supernet (with --train-log) and/or measure it", data,
          ("--variant", req("variant name (the family's ARMS, see vitnas.variants)")),
          ("--supernet", req("the variant's supernet .safetensors (written when --train-log is given)")),
          ("--train-log", {"help": "train the supernet first; output train_log.csv"}),
          ("--health", {"help": "output health.json (loss stability from --train-log, else train_log.csv "
                                 "beside --supernet)"}),
          ("--reference", {"help": "standalone.csv made by the reference stage (for --ranking)"}),
          ("--ranking", {"help": "output ranking.json"}),
          ("--search", {"help": "output search.json (evolution under the smallest budget)"}),
          ("--checkpoints", {"help": "checkpoint root (needed with --train-log)"}), threads)
    stage("known-answer", cmd_known_answer, "rank NAS-Bench-Macro's networks with the supernet of each "
          "arm (inherited weights, BatchNorm recalibrated) against the benchmark's accuracies, and judge "
          "searches on those scores by the benchmark (known_answer section)", data,
          ("--out", req("output folder (ranking.json, scores.csv, search.csv, switches.csv, claims.{csv,md})")),
          ckpt, threads)
    results_dir = ("--results", {"help": "the experiment's results folder, holding one folder per space "
                                         "(default: results/<experiment>, where the rules write)"})
    stage("figures", cmd_figures, "one space's tables (CSV, Markdown, LaTeX, HTML) and figures (PNG, PDF)",
          results_dir,
          ("--replicates", {"metavar": "SEEDS", "help": "comma-separated seeds: write the replicate "
                            "tables (mean, SD, 95 %% interval over seeds) and claims instead"}))
    stage("pareto-figure", cmd_pareto_figure, "the Pareto search's front, every evaluated network, the "
          "budgets' windows and picks (search.mode: pareto)", results_dir)
    stage("search-quality", cmd_search_quality, "evolution, random and the Pareto search on NAS-Bench-Macro, "
          "judged by regret at equal evaluations (search_quality.sizes, .seeds): search_quality/ and "
          "tables/search_quality.*", results_dir, space=False)
    stage("families", cmd_families, "every space's retrained models and untrained exports side by side: "
          "table and figures", results_dir, space=False)
    stage("published", cmd_published, "published numbers (config/references.yaml) beside the reproduced models "
          "that published.match names, with the batch-1 CPU latency of both measured here: "
          "tables/published.{csv,md,tex,html}, tables/published_latency.json, figures/published_latency.<format>",
          results_dir, ("--references", {"help": "the published numbers (default: the config's published.file)"}),
          threads, space=False)
    stage("show-arch", cmd_show_arch, "print an architecture JSON (any family) as a table with MACs and params",
          ("file", {"help": "architecture JSON (e.g. config/archs/vit-resnas-tiny.json)"}),
          ("--json", {"action": "store_true", "help": 'print {"family", "macs", "params", "convention"} only'}),
          ("--convention", {"default": "timm", "help": "MACs counting convention: timm (what the flop "
                            "counter measures on the exported model; default), vitas, resnas"}), space=False)
    stage("plan", cmd_plan, "what a run costs before it runs: per rule the jobs, training and evaluation "
          "PFLOPs (FLOPs = 2 x MACs; 3 x forward per training image), hours on a device and data read (GB)",
          ("--gpu", {"help": "a100 (312 TFLOP/s), h100 (989, SXM; PCIe is 756), h200 (989): dense bf16 peaks, "
                             "or a peak in TFLOP/s (default: h100)"}),
          ("--mfu", {"type": float, "help": "share of the peak reached (default: 0.4, not calibrated: no GPU "
                                            "measurement in this project yet; small ViTs reach less)"}),
          ("--cpu-gflops", {"type": float, "metavar": "N", "help": "plan at a CPU's measured GFLOP/s instead "
                            "(benchmarks/plan_vs_measured.py measures it; no MFU)"}),
          ("--replicates", {"action": "store_true", "help": "also `snakemake replicates`: the chain for every "
                            "replicate seed, and the ablation"}),
          ("--data", {"help": "the prepared splits (results/<experiment>/data) for their sizes (default: "
                              "the raw data when here, else the data set's nominal sizes)"}),
          ("--json", {"action": "store_true", "help": "print the table and every job as JSON"}), space=False)
    stage("make-fixtures", cmd_make_fixtures, "write a tiny ImageNet-style tree (real JPEGs, one corrupt) and a "
          "tiny COCO 2017 set, to try the paper-scale data paths on a laptop",
          ("--out", req("output folder (gets imagenet/ and coco/)")),
          ("--classes", {"type": int, "default": 4, "help": "classes of the ImageNet tree (default: 4)"}),
          space=False)
    return parser


def _one_space(cfg: dict, name: str | None) -> dict:
    """The config of the space this stage runs in: `--space`, or the config's only space."""
    if name is not None and cfg.get("space_name") != name:
        return configuration.for_space(cfg, name)
    if "space" in cfg:
        return cfg
    raise ConfigError(f"the config has several spaces ({', '.join(configuration.active_spaces(cfg))}); "
                      "pick one with --space")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = configuration.load(*args.config)
        if args.seed is not None:
            cfg = configuration.validate(cfg | {"seed": args.seed})
        if args.needs_space:
            cfg = _one_space(cfg, args.space)
        args.func(args, cfg)
    except EXPECTED_ERRORS as e:
        print(f"vitnas {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
