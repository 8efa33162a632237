"""Published numbers beside reproduced ones: tables/published.{csv,md,tex,html}.

Which retrained model is compared with which published one is the config's `published.match`:
per space, a model name or glob (`evo-1.3G`, `deit-*`) -> an entry (or a list) of the references
file (`published.file`, default config/references.yaml, read by `vitnas.references`). The table has
one row per published model and metric, every published model of the file included: the published value
and its convention, the matched reproduced model's value and its convention, and the difference
(reproduced - published). A published model nothing matches keeps empty reproduced cells, so the
embedded Fashion-MNIST run writes the table too.

MACs are compared under the published convention: a reproduced model is counted under that
convention when its family has the counter (`timm`, `vitas`, `resnas`; from the architecture in its
metrics.json), else under timm's, and both conventions are named in the row.

Batch-1 latency is never published for a CPU, so it is measured here (`vitnas.published_latency`):
every entry with an architecture file and every matched reproduced model, on one machine, in one
way; those rows say so, and the difference is given only where both were measured the same way.

`vitnas.report` reads the matched models' metrics.json and coco_eval.json (`input_files`, laid out
by `vitnas.results`) and hands them here; this module writes results/<experiment>/tables/published.*.
"""
from __future__ import annotations

import math
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from . import config as configuration
from . import results
from .errors import ConfigError
from .references import References, load
from .tables import number, write_table

PROJECT_CONVENTION = "timm"  # what metrics.json's "macs" is counted under
COLUMNS = ["published model", "paper", "metric", "published", "published convention", "reproduced model",
           "reproduced", "reproduced convention", "difference", "source"]
# metric -> (row label, scale of the stored value, decimals of reproduced values and differences)
METRIC_ROWS = {
    "top1": ("top-1 (%)", 1.0, 2),
    "top5": ("top-5 (%)", 1.0, 2),
    "macs": ("MACs (G)", 1e9, 4),
    "params": ("params (M)", 1e6, 3),
    "throughput": ("throughput (img/s)", 1.0, 0),
    "ap": ("box AP (%)", 1.0, 2),
    "latency": ("latency (ms), batch 1, measured here", 1.0, 3),
}
MEASURED_SOURCE = ("measured by this project (the published stage), not published: the network of the "
                   "architecture file, random weights")
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "imagenet": "ImageNet"}
DETECTION_SETS = {"composed": "the composed detection set", "coco": "COCO 2017 val"}


# ---------------------------------------------------------------------------------------- config

REPOSITORY = Path(__file__).resolve().parents[2]  # where config/references.yaml ships (editable install)


def references_path(cfg: dict, base=None) -> Path:
    """`published.file`: as given when it exists (or is absolute), else relative to `base` (the
    workflow's folder, so `snakemake -d elsewhere` still finds the repository's file; default: the
    repository this package was installed from)."""
    path = Path(cfg["published"]["file"])
    if path.is_absolute() or path.exists():
        return path
    return Path(base if base is not None else REPOSITORY) / path


def load_references(cfg: dict, base=None) -> References:
    return load(references_path(cfg, base))


def check(cfg: dict, refs: References) -> None:
    """Every `published.match` names a space of the config and entries of the references file."""
    spaces = cfg.get("spaces") or {}
    for space, patterns in (cfg["published"]["match"] or {}).items():
        if space not in spaces:
            raise ConfigError(f"published.match.{space}: no space {space!r} in spaces; choose one of "
                              f"{', '.join(spaces)}")
        for pattern, targets in (patterns or {}).items():
            for target in [targets] if isinstance(targets, str) else targets:
                if target not in refs.entries:
                    raise ConfigError(f"published.match.{space}.{pattern}: unknown entry {target!r} of "
                                      f"{refs.path}; choose one of {', '.join(refs.entries)}")


def matches(match: dict, models: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(space, model, entry) for every model of `models` (space -> names) that a pattern of
    `match` (space -> {glob -> entry or [entries]}) names, in the order of `models`; a space
    switched off (not in `models`) or without patterns matches nothing."""
    out = []
    for space, names in models.items():
        patterns = (match or {}).get(space) or {}
        for model in names:
            for pattern, targets in patterns.items():
                if fnmatchcase(model, pattern):
                    for target in [targets] if isinstance(targets, str) else targets:
                        if (space, model, target) not in out:
                            out.append((space, model, target))
    return out


def space_models(cfg: dict) -> dict[str, list[str]]:
    """The retrained models of every active space of `cfg`."""
    return {name: configuration.model_names(configuration.for_space(cfg, name))
            for name in configuration.active_spaces(cfg)}


def matched(cfg: dict) -> list[tuple[str, str, str]]:
    return matches(cfg["published"]["match"], space_models(cfg))


def matched_models(cfg: dict) -> list[tuple[str, str]]:
    """(space, model) of every retrained model that some published entry is compared with, once each."""
    return list(dict.fromkeys((s, m) for s, m, _ in matched(cfg)))


def input_files(cfg: dict, root: str, seed: int) -> list[str]:
    """What the table reads under the experiment's folder `root`: metrics.json and coco_eval.json of
    every matched model."""
    return [f for space, model in matched_models(cfg)
            for f in (results.retrain_metrics(root, space, seed, model), results.coco_eval(root, space, seed, model))]


# ---------------------------------------------------------------------------------------- reproduced

def reproduced_record(space: str, metrics: dict, detection: dict | None, scfg: dict) -> dict:
    """One reproduced model, as the table needs it: its metrics.json (with "arch") and
    coco_eval.json, and the space config it ran with (for the data set and the input size its MACs
    are counted at)."""
    from .families import build_space

    data = scfg["data"]
    sp = build_space(scfg)
    name = DATASET_NAMES.get(data["dataset"], data["dataset"])
    images = f"{metrics['test_images']} images, " if metrics.get("test_images") else ""
    transfer = scfg.get("transfer", {})
    detection_set = DETECTION_SETS.get(transfer.get("dataset", "composed"), transfer.get("dataset"))
    return {
        "space": space, "model": metrics["model"], "family": sp.family, "arch": metrics.get("arch"),
        "input": (sp.img_size, sp.in_chans, sp.num_classes),
        "top1": metrics.get("top1"), "params": metrics.get("params"), "macs": metrics.get("macs"),
        "throughput": metrics.get("throughput"),
        "ap": None if detection is None else detection.get("AP"),
        "settings": {
            "top1": f"{name} test split ({images}{sp.img_size} px)",
            "params": f"all parameters, {sp.num_classes}-class head",
            "throughput": metrics.get("throughput_device") or "as measured",
            "ap": (f"{detection.get('detector', 'detector')} on {detection_set}" if detection else None),
        },
    }


def reproduced_macs(record: dict, convention: str) -> tuple[float | None, str]:
    """The model's MACs under `convention` when its family counts it, else under timm's:
    (MACs, the convention used)."""
    from .families import get

    if convention != PROJECT_CONVENTION and record.get("arch"):
        if convention in get(record["family"]).Space.conventions:
            from .arch import Arch
            from .families import count

            return float(count(Arch.from_dict(record["arch"]), *record["input"], convention)["macs"]), convention
    return (None if record.get("macs") is None else float(record["macs"])), PROJECT_CONVENTION


# ---------------------------------------------------------------------------------------- table

def measured_networks(refs: References, pairs, reproduced: dict) -> dict:
    """What the stage times (`published_latency.measure_all`): every entry with an architecture file
    at its published input, and every matched reproduced model (`space/model`) at its space's."""
    from .arch import Arch
    from .published_latency import arch_file

    out = {key: arch_file(entry.arch) for key, entry in refs.entries.items() if entry.arch is not None}
    for space, model in dict.fromkeys((s, m) for s, m, _ in pairs):
        record = reproduced[(space, model)]
        if record.get("arch"):
            out[f"{space}/{model}"] = (Arch.from_dict(record["arch"]), tuple(record["input"]))
    return out


def _rows(refs: References, entry, record: dict | None, measured: dict | None = None) -> list[dict]:
    """The rows of one published model beside one reproduced model (or none); `measured`: the
    latencies measured here (`published_latency.measure_all`), or None."""
    from .published_latency import setting

    label_of = lambda conv: refs.conventions.get(conv, {}).get("label", conv)  # noqa: E731
    rows = []

    def row(metric: str, published, pub_conv, reproduced, rep_conv, key: str, source=None, text=None,
            comparable: bool = True):
        """key: of the entry's sources and published text, unless `source` and `text` are given."""
        label, scale, _ = METRIC_ROWS[metric]
        if published is None and reproduced is None:
            return
        pub, rep = number(published) / scale, number(reproduced) / scale
        rows.append({
            "published model": entry.name, "paper": entry.paper, "metric": label, "published": pub,
            "published convention": pub_conv if published is not None else None,
            "reproduced model": f"{record['space']}/{record['model']}" if record else None,
            "reproduced": rep, "reproduced convention": rep_conv if reproduced is not None else None,
            "difference": rep - pub if comparable else math.nan,
            "source": (source or entry.source_of(key)) if published is not None else None,
            "_metric": metric, "_text": text or entry.text.get(key),
        })

    rec = record or {}
    settings = rec.get("settings", {})
    for metric in ("top1", "top5"):
        reproduced = rec.get(metric) if metric == "top1" else None  # no top-5 is measured here
        row(metric, getattr(entry, metric), refs.setting(entry, metric), reproduced, settings.get(metric), metric)
    conventions = list(entry.macs) or ([PROJECT_CONVENTION] if record else [])
    for conv in conventions:
        value, used = reproduced_macs(rec, conv) if record else (None, conv)
        row("macs", entry.macs.get(conv), label_of(conv), value, label_of(used), f"macs.{conv}")
    row("params", entry.params, refs.setting(entry, "params"), rec.get("params"), settings.get("params"), "params")
    row("throughput", entry.throughput, refs.setting(entry, "throughput"), rec.get("throughput"),
        settings.get("throughput"), "throughput")
    row("ap", entry.ap, refs.setting(entry, "ap"), rec.get("ap"), settings.get("ap"), "ap")
    if measured is not None:
        def timed(name):  # (median ms, how it was timed), or (None, None) where not timed
            m = measured["models"].get(name)
            return (m["median_ms"], setting(measured, m["input"]["img_size"])) if m else (None, None)

        pub, pub_set = timed(entry.key)
        rep, rep_set = timed(f"{record['space']}/{record['model']}" if record else None)
        # A difference only where both sides were timed the same way (e.g. not 224 px against 28 px).
        row("latency", pub, pub_set, rep, rep_set, "latency", MEASURED_SOURCE,
            None if pub is None else f"{pub:.3f}", comparable=pub_set == rep_set)
    return rows


def published_rows(refs: References, pairs: list[tuple[str, str, str]],
                   reproduced: dict[tuple[str, str], dict], measured: dict | None = None) -> pd.DataFrame:
    """Numeric rows (NaN where missing): every entry of `refs` in file order, once per reproduced
    model matched to it (`pairs`: (space, model, entry); `reproduced`: (space, model) -> record),
    or once with empty reproduced cells; with `measured` (`published_latency.measure_all`) also the
    batch-1 latencies measured here. MACs in G, params in M, the rest as published."""
    rows = []
    for key, entry in refs.entries.items():
        records = [reproduced[(s, m)] for s, m, e in pairs if e == key]
        for record in records or [None]:
            rows += _rows(refs, entry, record, measured)
    return pd.DataFrame(rows, columns=[*COLUMNS, "_metric", "_text"])


def _published_decimals(text: str | None, scale: float) -> int:
    """The decimals a published number was written with, in the table's unit ("1.0G" in G: 1;
    "858M" in G: 3; "82.0": 1)."""
    if not isinstance(text, str) or not text:  # nothing published (NaN in the frame)
        return 0
    number, unit = (text[:-1], text[-1]) if text[-1] in "KMG" else (text, "")
    decimals = len(number.split(".")[1]) if "." in number else 0
    shift = round(math.log10(scale / {"K": 1e3, "M": 1e6, "G": 1e9}.get(unit, 1.0)))
    return max(0, decimals + shift)


def _text(x: float, decimals: int) -> str | None:
    return None if not math.isfinite(x) else f"{x + 0.0:.{decimals}f}"  # + 0.0: no "-0.0"


def published_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The table as written, numbers as text: published values with the decimals they were
    published with, reproduced values and differences at the metric's precision; None where empty."""
    out = rows[COLUMNS].astype(object)
    scale = rows["_metric"].map(lambda m: METRIC_ROWS[m][1])
    digits = rows["_metric"].map(lambda m: METRIC_ROWS[m][2])
    out["published"] = [_text(x, _published_decimals(t, s))
                        for x, t, s in zip(rows["published"], rows["_text"], scale)]
    for column in ("reproduced", "difference"):
        out[column] = [_text(round(x, d), d) for x, d in zip(rows[column], digits)]
    return out.where(out.notna(), None)


def caption(refs: References, seed: int, pairs: list) -> str:
    matched_text = ("difference = reproduced - published (percentage points for top-1, top-5 and AP)"
                    if pairs else "no reproduced model of this run matches a published one "
                                  "(published.match in the config), so the reproduced cells are empty")
    return (f"Published numbers ({refs.path.name}) beside this run's (seed {seed}): one row per published "
            "model and metric; reproduced: the retrained model that published.match compares with it; "
            f"{matched_text}. Each row names how its values were counted or measured: MACs under the "
            "published counting convention, and the reproduced model under the same one where this project "
            "has that counter (else timm's). Latency rows are not published: both sides were measured by "
            "this project, on one machine, from the architecture (random weights).")


def footnote(refs: References, rows: pd.DataFrame) -> str:
    used = [c for c, v in refs.conventions.items()
            if v["label"] in set(rows["published convention"]) | set(rows["reproduced convention"])]
    conventions = "; ".join(f"{refs.conventions[c]['label']}: {refs.conventions[c]['description']}" for c in used)
    papers = "; ".join(f"{k}: {v}" for k, v in refs.papers.items() if k in set(rows["paper"]))
    return f"MACs conventions. {conventions}. Papers. {papers}."


def write_published(refs: References, pairs, reproduced, stem: Path, seed: int,
                    measured: dict | None = None) -> pd.DataFrame:
    """<stem>.csv, .md, .html and .tex (a booktabs longtable); returns the numeric rows."""
    rows = published_rows(refs, pairs, reproduced, measured)
    write_table(published_table(rows), stem, caption(refs, seed, pairs), {}, footnote=footnote(refs, rows),
                latex={"environment": "longtable",
                       "column_format": "p{2.2cm}lp{1.6cm}rp{2.6cm}lrp{2.6cm}rp{3.4cm}"})
    return rows
