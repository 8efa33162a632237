"""Experiment configuration: read, fill defaults from the schema, validate, explain errors in one line.

The schema (`config.schema.yaml`, also at workflow/schemas/) is the single source of defaults; the
Snakefile and every `vitnas` CLI stage go through `validate`, so a stage run by hand sees the same
configuration as one run by Snakemake. Torch-free.
"""
from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@lru_cache(maxsize=1)
def schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _with_defaults(validator_class):
    """A validator that writes schema defaults into the instance before checking it."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, sub_schema):
        if isinstance(instance, dict):
            for name, prop in props.items():
                if "default" in prop and name not in instance:
                    instance[name] = copy.deepcopy(prop["default"])
        yield from check_properties(validator, props, instance, sub_schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        allowed = sorted(error.schema.get("properties", {}))
        if error.validator == "unevaluatedProperties":  # allowed keys also come through $ref
            ref = error.schema.get("$ref", "").rsplit("/", 1)[-1]
            allowed = sorted(set(allowed) | set(schema()["$defs"].get(ref, {}).get("properties", {})))
        extra = sorted(set(error.instance) - set(allowed))
        prefix = f"{where}." if error.absolute_path else ""
        return (f"config: unknown key {', '.join(prefix + k for k in extra)}; "
                f"allowed keys here: {', '.join(allowed)}")
    if error.validator == "enum":
        return f"config: {where} = {error.instance!r} is not allowed; choose one of {error.validator_value}"
    if error.validator == "type":
        return f"config: {where} = {error.instance!r} has the wrong type; expected {error.validator_value}"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"config: {where} = {error.instance!r} is out of range ({error.validator} {error.validator_value})"
    if error.validator == "oneOf":
        options = " or ".join(repr(o["const"]) if "const" in o else _kind(o) for o in error.validator_value)
        return f"config: {where} = {error.instance!r} is not allowed; use {options}"
    if error.validator == "pattern":
        desc = error.schema.get("description", f"matching {error.validator_value}")
        return f"config: {where} = {error.instance!r} is not valid; expected {desc}"
    return f"config: {where}: {error.message}"


def _kind(option: dict) -> str:
    """'a number in [0, 1]' for {type: number, minimum: 0, maximum: 1}."""
    lo, hi = option.get("minimum", "-inf"), option.get("maximum", "inf")
    return f"a {option.get('type', 'value')} in [{lo}, {hi}]"


# Sections a space of `spaces` may override for its own runs.
SPACE_OVERRIDES = ("supernet", "search", "retrain", "transfer", "reference", "ablation")


def validate(cfg: dict) -> dict:
    """Return a copy of `cfg` with every default filled in; raise ConfigError on the first problem.

    A space of `spaces` without a `family` takes its name's family (`spaces: {resnas: {...}}`).
    With exactly one active space and no resolved `space` yet, that space is resolved
    (`for_space`), so a single-space config reads like before. A lone `space` section (no
    `spaces`) is shorthand for one space named after its family (default vit)."""
    cfg = copy.deepcopy(cfg if cfg is not None else {})
    if "space" in cfg and "space_name" not in cfg:
        if "spaces" in cfg:
            raise ConfigError("config: both space and spaces are given; put the space under "
                              "spaces.<name> (see config/config.yaml)")
        name = (cfg["space"] or {}).setdefault("family", "vit")
        cfg["spaces"] = {name: cfg.pop("space")}
    for name, entry in (cfg.get("spaces") or {}).items():
        if isinstance(entry, dict) and "family" not in entry:
            entry["family"] = name
    cfg = _check(cfg)
    names = active_spaces(cfg)
    if "space" not in cfg and len(names) == 1:
        cfg = for_space(cfg, names[0])
    return cfg


def active_spaces(cfg: dict) -> list[str]:
    """The names of the spaces `cfg` runs, in order (a null entry is switched off)."""
    names = [name for name, entry in cfg["spaces"].items() if entry is not None]
    if not names:
        raise ConfigError("spaces: every space is switched off (null); give at least one, e.g. "
                          "spaces: {vit: {family: vit}}")
    return names


def for_space(cfg: dict, name: str) -> dict:
    """The config of one space: its section as `space` (and its name as `space_name`), and its
    overrides merged over the experiment's sections; validated."""
    entry = cfg["spaces"].get(name)
    if entry is None:
        raise ConfigError(f"spaces: no active space {name!r}; choose one of {', '.join(active_spaces(cfg))}")
    over = {k: entry[k] for k in SPACE_OVERRIDES if k in entry}
    if "enabled" in over.get("ablation", {}):  # the rules declare the study's outputs experiment-wide
        raise ConfigError(f"spaces.{name}.ablation.enabled: the ablation study is switched on for the "
                          "whole experiment; set ablation.enabled at the top level")
    out = deep_merge({k: v for k, v in cfg.items() if k not in ("space", "space_name")}, over)
    out["space"] = {k: v for k, v in entry.items() if k not in SPACE_OVERRIDES}
    out["space_name"] = name
    try:
        return _check(out)
    except ConfigError as e:
        raise ConfigError(f"spaces.{name}: {e}") from None


def _check(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    errors = sorted(_Validator(schema()).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        # A unknown key is the most telling error; a wrong value the next.
        errors.sort(key=lambda e: e.validator not in ("additionalProperties", "unevaluatedProperties"))
        raise ConfigError(_describe(errors[0]))
    return cfg


def read(source: str) -> dict:
    """A config from a YAML/JSON file path, or from an inline JSON object string."""
    if source.lstrip().startswith("{"):  # inline JSON (what the Snakemake rules pass)
        try:
            return json.loads(source)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config: inline JSON is not valid ({e}); check the quoting") from None
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config: no such file {source}; pass a YAML file such as config/config.yaml")
    text = path.read_text()
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: {source} is not valid YAML{where}; fix the syntax") from None


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(*sources: str) -> dict:
    """Read config files (later ones merged over earlier ones) and validate the result."""
    cfg: dict = {}
    for s in sources:
        cfg = deep_merge(cfg, read(s))
    return validate(cfg)


def section_hash(cfg: dict, *sections: str) -> str:
    """A short hash of the named sections: keys checkpoint folders, so a changed config starts fresh."""
    blob = json.dumps({s: cfg.get(s) for s in sections}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def check_experiment(cfg: dict) -> None:
    """Checks that need each space: divisibility, budgets inside the space's MACs range, a search
    window that holds networks and the baseline, how each supernet samples (seconds at most: fail
    before anything runs)."""
    from .families import design_baseline
    from .spaces import SpaceError, build_space, format_macs, parse_macs, sampling_record, supernet_budget, window
    from .variants import selected_variants

    for scfg in [cfg] if "space" in cfg else [for_space(cfg, name) for name in active_spaces(cfg)]:
        try:
            space = build_space(scfg)
            for name in scfg["search"]["budgets"]:
                space.check_budget(name, parse_macs(name))
                lo, hi = window(scfg, name)
                if not space.deepest_in_window(lo, hi):
                    raise SpaceError(f"search.budgets: no network of the space has MACs in the window of "
                                     f"{name}, [{format_macs(lo)}, {format_macs(hi)}]; lower "
                                     "search.min_budget_fraction")
                design_baseline(scfg, space, name)
            for name in dict.fromkeys(supernet_budget(scfg, b) for b in scfg["search"]["budgets"]):
                sampling_record(scfg, space, name)
            if scfg["ablation"]["enabled"]:
                selected_variants(scfg)  # unknown variant names stop here
        except SpaceError as e:
            raise SpaceError(f"spaces.{scfg['space_name']}: {e}") from None
    from . import published  # the published numbers, and that published.match names what they hold

    published.check(cfg, published.load_references(cfg))


def check_data(cfg: dict, data_dir=None) -> dict | None:
    """Checks that need the data set's size: every training section's batch fits in the training
    split. Sizes come from the prepared split (`data_dir`) or the raw data; without either (a dry
    run on a machine without the data) nothing is checked. Returns the split sizes (or None)."""
    from .data import split_sizes

    sizes = split_sizes(cfg, data_dir)
    if sizes is None:
        return None
    for scfg in [cfg] if "space" in cfg else [for_space(cfg, name) for name in active_spaces(cfg)]:
        own = cfg.get("spaces", {}).get(scfg["space_name"]) or {}
        for section in ("supernet", "retrain"):
            batch = scfg[section]["batch_size"]
            if batch > sizes["train"]:
                key = (f"spaces.{scfg['space_name']}." if "batch_size" in own.get(section, {}) else "") + section
                raise ConfigError(f"{key}.batch_size: {batch} exceeds the {sizes['train']} images of the training "
                                  "split; lower it (or raise data.train_limit)")
    return sizes


def model_names(cfg: dict) -> list[str]:
    """Retrained models of one space: per budget the evolved architecture and its hand-designed
    baseline ("deit": the DeiT- or ViT-Res-shaped network of the family)."""
    return [f"{kind}-{budget}" for budget in cfg["search"]["budgets"] for kind in ("evo", "deit")]
