"""Published numbers (config/references.yaml): read, validate, explain errors in one line.

The file has four sections: `papers` (short name -> citation), `conventions` (MACs counting
conventions: label and description), `settings` (what each metric was measured on, by default) and
`entries` (one published model each: name, paper, source, the published metrics, optionally the
architecture file that reproduces it). `load` returns a `References`; every problem raises
ConfigError naming the file, the entry and the key. Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from .errors import ConfigError
from .spaces import parse_macs

# The metrics an entry may publish, in table order; "macs" is a mapping convention -> count.
METRICS = ("top1", "top5", "macs", "params", "throughput", "ap")
_COUNT = {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?[KMG]$",
          "description": "a count with a unit such as 1.3G or 5.72M"}
_PERCENT = {"type": "number", "minimum": 0, "maximum": 100}
_TEXT = {"type": "string", "minLength": 1}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["papers", "conventions", "entries"],
    "properties": {
        "papers": {"type": "object", "minProperties": 1, "additionalProperties": _TEXT},
        "conventions": {
            "type": "object", "minProperties": 1,
            "additionalProperties": {"type": "object", "additionalProperties": False,
                                     "required": ["label", "description"],
                                     "properties": {"label": _TEXT, "description": _TEXT}}},
        "settings": {"type": "object", "additionalProperties": False,
                     "properties": {m: _TEXT for m in METRICS if m != "macs"}},
        "entries": {
            "type": "object", "minProperties": 1,
            "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "required": ["name", "paper", "source"],
                "properties": {
                    "name": _TEXT, "paper": _TEXT, "source": _TEXT, "note": _TEXT, "arch": _TEXT,
                    "sources": {"type": "object", "additionalProperties": _TEXT},
                    "settings": {"type": "object", "additionalProperties": False,
                                 "properties": {m: _TEXT for m in METRICS if m != "macs"}},
                    "top1": _PERCENT, "top5": _PERCENT, "ap": _PERCENT,
                    "params": _COUNT,
                    "throughput": {"type": "number", "exclusiveMinimum": 0},
                    "macs": {"type": "object", "minProperties": 1, "additionalProperties": _COUNT},
                }}},
    },
}


@dataclass(frozen=True)
class Entry:
    """One published model; metrics as plain numbers (MACs and params as counts, not G or M)."""
    key: str
    name: str
    paper: str
    source: str
    sources: dict = field(default_factory=dict)   # metric ("top1", "macs.<convention>", ...) -> source
    settings: dict = field(default_factory=dict)  # metric -> what it was measured on
    arch: Path | None = None
    note: str | None = None
    top1: float | None = None
    top5: float | None = None
    params: float | None = None
    throughput: float | None = None
    ap: float | None = None
    macs: dict = field(default_factory=dict)      # convention -> MACs
    text: dict = field(default_factory=dict)      # metric ("top1", "macs.<convention>", ...) -> as written

    def source_of(self, metric: str) -> str:
        return self.sources.get(metric, self.source)


@dataclass(frozen=True)
class References:
    path: Path
    papers: dict
    conventions: dict   # name -> {"label", "description"}
    settings: dict      # metric -> default setting
    entries: dict       # key -> Entry, in file order

    def setting(self, entry: Entry, metric: str) -> str | None:
        return entry.settings.get(metric, self.settings.get(metric))

    def label(self, convention: str) -> str:
        return self.conventions[convention]["label"]


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _where(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"unknown key {', '.join(extra)} in {where}; allowed keys here: {', '.join(allowed)}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "pattern":
        expected = error.schema.get("description", error.validator_value)
        return f"{where} = {error.instance!r} is not valid; expected {expected}"
    if error.validator == "type":
        expected = error.schema.get("description", f"type {error.validator_value}")
        return f"{where} = {error.instance!r} has the wrong type; expected {expected}"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{where} = {error.instance!r} is out of range ({error.validator} {error.validator_value})"
    return f"{where}: {error.message}"


def load(path) -> References:
    """Read and validate a references file; ConfigError (one line: file, entry, key) on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"references: no such file {path}; set published.file to a file such as "
                          "config/references.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix the syntax") from None
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(raw if raw is not None else {}),
                    key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(f"{path}: {_describe(errors[0])}")
    papers, conventions = raw["papers"], raw["conventions"]
    if "timm" not in conventions:
        raise ConfigError(f"{path}: conventions.timm is missing; it names this project's counter, which every "
                          "reproduced model is counted under")
    entries = {}
    for key, e in raw["entries"].items():
        def fail(what: str):
            raise ConfigError(f"{path}: entries.{key}.{what}")

        if e["paper"] not in papers:
            fail(f"paper = {e['paper']!r} is not under papers; choose one of {', '.join(papers)}")
        for conv in e.get("macs", {}):
            if conv not in conventions:
                fail(f"macs: convention {conv!r} is not under conventions; choose one of {', '.join(conventions)}")
        published = [m for m in METRICS if m != "macs" and m in e] + [f"macs.{c}" for c in e.get("macs", {})]
        for metric in e.get("sources", {}):
            if metric not in published:
                fail(f"sources: {metric!r} is not a metric this entry publishes ({', '.join(published)})")
        arch = None
        if "arch" in e:
            arch = (path.parent / e["arch"]).resolve()
            if not arch.is_file():
                fail(f"arch: no such file {e['arch']} (paths are relative to {path.parent})")
        if not published:
            fail("publishes no metric; give at least one of " + ", ".join(METRICS))
        entries[key] = Entry(
            key=key, name=e["name"], paper=e["paper"], source=e["source"], sources=dict(e.get("sources", {})),
            settings=dict(e.get("settings", {})), arch=arch, note=e.get("note"),
            top1=e.get("top1"), top5=e.get("top5"), ap=e.get("ap"), throughput=e.get("throughput"),
            params=parse_macs(e["params"]) if "params" in e else None,
            macs={c: parse_macs(v) for c, v in e.get("macs", {}).items()},
            text={**{m: str(e[m]) for m in METRICS if m != "macs" and m in e},
                  **{f"macs.{c}": str(v) for c, v in e.get("macs", {}).items()}})
    return References(path=path, papers=papers, conventions=conventions, settings=dict(raw.get("settings", {})),
                      entries=entries)
