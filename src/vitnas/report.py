"""The last stage: read what the chain, the ablation and the replicates wrote, once, and hand it to
the modules that derive each table (`space_tables`, `claims`, `compare`, `published`) and to the
writers (`tables`).

Every path comes from `vitnas.results`, under the experiment's folder `root` (results/<experiment>):
  `make_report` (one space, the default run's seed): <space>/tables/{models,search_vs_random,detection,
    ranking,claims,latency_vs_macs}.* and <space>/figures/{pareto,search_progress}.<format>; with the
    ablation study also tables/ablation.* and figures/ablation_tau.<format>;
  `make_pareto_figure` (search.mode: pareto): <space>/figures/pareto_front.<format>;
  `make_replicates_report` (one space, every seed): <space>/replicates/tables/{replicates,claims}.*
    (and the ablation's table and figure);
  `make_families_report`: tables/families.* and figures/families_*.<format>;
  `make_published_report`: tables/published.* and published_latency.json, figures/published_latency.<format>;
  and beside them `search_quality_report.make_search_quality_report` (rule search_quality):
    tables/search_quality.* and search_quality/ (NAS-Bench-Macro, no chain input).

Every input is read before anything is written, so a missing file fails fast and leaves no partial
report; every output is written atomically, so an interrupted run never leaves a half-written file.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import compare, published, results
from .claims import claims_table, write_claims
from .config import for_space
from .references import load as read_references
from .space_tables import (LATENCY_VS_MACS_CAPTION, RANKING_CAPTION, SEARCH_VS_RANDOM_CAPTION, ablation_caption,
                           ablation_table, ablation_tau_figure, detection_caption, detection_table,
                           latency_vs_macs_table, models_caption, models_table, pareto_figure, pareto_search_figure,
                           ranking_table, replicates_caption, replicates_table, search_progress_figure,
                           search_vs_random_table)
from .tables import MACS_CONVENTION, check_formats, float_decimals, save_figure, search_windows, write_table


def make_report(root, space: str, budgets: list[str], models: list[str], seed: int, supernets: list[str],
                formats=("png", "pdf"), dpi: int = 150, ablation_variants: list[str] = (), family: str = "vit",
                bootstrap: int = 2000, search: dict | None = None, known_answer: bool = False,
                latency_budgets: list[str] = ()) -> None:
    """Read every input of the chain of `seed` in `space` (and, with `ablation_variants`, of the
    ablation; with `latency_budgets`, search.latency_vs_macs, the latency-against-MACs records),
    then write the space's tables/ and figures/, the claims table included (with `known_answer`,
    the known-answer study's claims after the chain's)."""
    check_formats(formats)
    chain = results.load_chain(root, space, seed, budgets, models, supernets)
    ablation = results.load_ablation(root, space, list(ablation_variants)) if ablation_variants else None
    latency = results.load_latency_vs_macs(root, space, [seed], list(latency_budgets))
    claims = claims_table([chain], budgets, ablation or {}, bootstrap, family, search, latency)
    if known_answer:
        claims = pd.concat([claims, results.load_known_claims(root, space)[claims.columns]], ignore_index=True)
    windows = search_windows(chain.histories)
    ab = ablation_table(ablation, bootstrap) if ablation is not None else None  # may fail: before writing

    tables = Path(results.tables_dir(root, space))
    models_df = models_table(chain.metrics, windows, chain.inherited)
    write_table(models_df, tables / "models", models_caption(seed),
                float_decimals(models_df, **{"throughput (img/s)": 1, "latency torch (ms)": 3,
                                             "latency ORT (ms)": 3}), footnote=MACS_CONVENTION)
    svr = search_vs_random_table(chain.histories, budgets)
    write_table(svr, tables / "search_vs_random", SEARCH_VS_RANDOM_CAPTION, float_decimals(svr),
                footnote=MACS_CONVENTION)
    write_table(detection_table(chain.detection, chain.metrics, windows), tables / "detection",
                detection_caption(chain.detection), {k: 2 for k in results.AP_KEYS})
    ranking = ranking_table(chain.supernets, windows)
    write_table(ranking, tables / "ranking", RANKING_CAPTION,
                float_decimals(ranking, 3, **{"min layer active (%)": 1}))
    write_claims(claims, tables / "claims")
    lvm = latency_vs_macs_table(latency)
    write_table(lvm, tables / "latency_vs_macs", LATENCY_VS_MACS_CAPTION, float_decimals(lvm, 3, **{
        "MACs pick top-1 (%)": 2, "latency pick top-1 (%)": 2, "difference (pp)": 2}))

    figures = Path(results.figures_dir(root, space))
    save_figure(pareto_figure(chain.histories, chain.metrics, budgets), figures / "pareto", formats, dpi)
    save_figure(search_progress_figure(chain.histories, budgets), figures / "search_progress", formats, dpi)
    if ablation is not None:
        write_ablation(ablation, ab, tables, figures, bootstrap, formats, dpi)


def make_pareto_figure(root, space: str, seed: int, windows: dict, formats=("png", "pdf"),
                       dpi: int = 150) -> None:
    """figures/pareto_front.<format> of `space` (search.mode: pareto) from the search's history of
    `seed`; `windows`: budget -> (lo, hi) MACs."""
    check_formats(formats)
    history = results.load_pareto_history(root, space, seed)
    save_figure(pareto_search_figure(history, windows), Path(results.figures_dir(root, space)) / "pareto_front",
                formats, dpi)


def write_ablation(ablation: dict, table: pd.DataFrame, tables: Path, figures: Path, bootstrap: int,
                   formats, dpi: int) -> None:
    """tables/ablation.* and figures/ablation_tau.*, from `load_ablation` and `ablation_table`."""
    write_table(table, tables / "ablation", ablation_caption(ablation, bootstrap),
                float_decimals(table, 2, **{c: 3 for c in ("Kendall tau", "Spearman rho", "ceiling tau",
                                                           "tau - tau(full)")}),
                footnote=MACS_CONVENTION)
    save_figure(ablation_tau_figure(ablation), figures / "ablation_tau", formats, dpi)


def make_replicates_report(root, space: str, budgets: list[str], models: list[str], seeds: list[int],
                           ablation_variants: list[str] = (), bootstrap: int = 2000, family: str = "vit",
                           formats=("png", "pdf"), dpi: int = 150, search: dict | None = None,
                           latency_budgets: list[str] = ()) -> None:
    """Read every seed's chain in `space` (and the ablation, and the latency-against-MACs records of
    `latency_budgets`), then write replicates/tables/: every model over the seeds and the claims
    with intervals over the seeds; with `ablation_variants` also the ablation table and figure
    (replicates/figures/)."""
    chains = [results.load_chain(root, space, seed, budgets, models) for seed in seeds]
    ablation = results.load_ablation(root, space, list(ablation_variants)) if ablation_variants else None
    latency = results.load_latency_vs_macs(root, space, seeds, list(latency_budgets))
    claims = claims_table(chains, budgets, ablation or {}, bootstrap, family, search, latency)
    windows = search_windows(pd.concat([c.histories for c in chains], ignore_index=True))
    ab = ablation_table(ablation, bootstrap) if ablation is not None else None  # may fail: before writing

    tables = Path(results.tables_dir(root, space, replicates=True))
    table = replicates_table(pd.concat([c.metrics.assign(seed=c.seed) for c in chains], ignore_index=True),
                             pd.concat([c.detection.assign(seed=c.seed) for c in chains], ignore_index=True),
                             windows)
    write_table(table, tables / "replicates", replicates_caption(list(seeds)), float_decimals(table),
                footnote=MACS_CONVENTION)
    write_claims(claims, tables / "claims")
    if ablation is not None:
        write_ablation(ablation, ab, tables, Path(results.figures_dir(root, space, replicates=True)), bootstrap,
                       formats, dpi)


def make_families_report(root, spaces: dict[str, tuple[str, list[str], list[str]]], seed: int,
                         formats=("png", "pdf"), dpi: int = 150) -> pd.DataFrame:
    """Read every space's retrained models and exports of `seed` (`spaces`: name -> (family, model
    names, budgets)), then write the families table and figures; returns the table."""
    loaded = {name: (family, results.load_metrics(root, name, seed, models),
                     results.load_detection(root, name, seed, models),
                     results.load_inherited(root, name, seed, budgets))
              for name, (family, models, budgets) in spaces.items()}
    return compare.write_families(compare.families_frame(loaded), Path(results.tables_dir(root)),
                                  Path(results.figures_dir(root)), seed, formats, dpi)


def make_published_report(root, cfg: dict, references=None, threads: int = 1, timer=None) -> pd.DataFrame:
    """Read the published numbers (`references`, default the config's published.file) and every
    matched model's results, time the published networks and the matched ones here (`threads`;
    `timer`: a stand-in for `published_latency.time_network`), then write tables/published.*,
    tables/published_latency.json and figures/published_latency.<format>; returns the table's
    numeric rows."""
    from .io import write_json
    from .published_latency import figure_points, latency_figure, measure_all

    fig = cfg["figures"]
    check_formats(fig["formats"])
    refs = read_references(references) if references is not None else published.load_references(cfg)
    published.check(cfg, refs)
    seed, pairs = cfg["seed"], published.matched(cfg)
    reproduced = {}
    for space, model in published.matched_models(cfg):
        metrics = results.load_metrics_record(root, space, seed, model)
        detection = results.load_detection_record(root, space, seed, model)
        reproduced[(space, model)] = published.reproduced_record(space, metrics, detection, for_space(cfg, space))
    lat = cfg["published"]["latency"]
    measured = measure_all(published.measured_networks(refs, pairs, reproduced), threads, lat["warmup"],
                           lat["repeats"], timer)
    rows = published.write_published(refs, pairs, reproduced, Path(results.tables_dir(root)) / "published", seed,
                                     measured)
    write_json(results.table(root, "published_latency", "json"), measured)
    save_figure(latency_figure(figure_points(refs, measured, pairs, reproduced), measured["machine"]),
                Path(results.figures_dir(root)) / "published_latency", fig["formats"], fig["dpi"])
    return rows
