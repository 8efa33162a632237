"""Experiment configuration: read, fill defaults from the schema, validate, explain errors in one
line; merge a space's overrides (`for_space`); say which sections each stage reads (`stage_config`).

The schema (`config.schema.yaml`, also at workflow/schemas/) is the single source of defaults, with
each family's space section from its own `space.schema.yaml` (through the families registry, which
reads the file without importing the family). The Snakefile and every `vitnas` CLI stage go through
`validate`, so a stage run by hand sees the same configuration as one run by Snakemake. Torch-free.
Cross-checks that need a family, the published numbers or the data are in `vitnas.checks`.
"""
from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from . import families
from .errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")

# Sections a space of `spaces` may override for its own runs (the only place they are listed).
SPACE_OVERRIDES = ("supernet", "search", "retrain", "transfer", "reference", "ablation")

# What every stage reads: who runs, on what data, in which space, and the supernet section (its
# per_budget and switches name what the later stages read).
READ_BY_ALL = ("experiment", "seed", "device", "data", "space", "space_name", "supernet")
# Stage -> the sections it reads besides READ_BY_ALL. A rule passes exactly these (its rerun
# trigger: editing one section reruns only the stages that read it); the CLI stage of the same name
# reads them.
STAGE_SECTIONS = {
    "prepare_data": (),
    "train_supernet": ("search",),
    "ranking": ("search", "reference"),
    "search": ("search",),
    "latency_vs_macs": ("search",),  # search.latency: the device it times on
    "design_baseline": ("search", "retrain"),
    "retrain": ("retrain", "onnx", "latency"),
    "export": ("retrain", "onnx", "latency"),  # measured as retraining measures: the same sections
    "reference": ("search", "retrain", "reference"),
    "compose_detection": ("transfer",),
    "transfer": ("retrain", "transfer"),
    "ablation": ("search", "retrain", "reference", "ablation"),
    "figures": ("search", "retrain", "reference", "ablation", "figures", "known_answer"),
    "known_answer": ("search", "ablation", "known_answer"),
    "search_quality": ("search", "search_quality", "figures"),
}
# Stage -> the sections its training progress depends on: they key its checkpoint folder, so a
# rerun caused by another section resumes instead of starting over. (retrain's section holds
# `init` and `finetune`, so scratch and fine-tuning never resume each other; a fine-tune also keys
# on its starting weights' content, `retrain.init_key`.)
CHECKPOINT_SECTIONS = {
    "train_supernet": ("seed", "data", "space", "supernet", "search"),
    "search": ("seed", "data", "space", "supernet", "search"),
    "retrain": ("seed", "data", "space", "retrain"),
    "reference": ("seed", "data", "space", "search", "retrain", "reference"),
    "transfer": ("seed", "data", "space", "retrain", "transfer"),
    "ablation": ("seed", "data", "space", "supernet", "search", "retrain", "ablation"),
}


# Keys that choose which jobs the workflow plans, not what a job computes: left out of the stages'
# configs (no rerun trigger) and of checkpoint keys (switching them on resumes, never restarts),
# except for the stages in PLANNED_BY, which list the planned models.
PLANNING_KEYS = {"retrain": ("compare_finetune",), "search": ("latency_vs_macs",)}
PLANNED_BY = ("figures",)


def _without_planning(cfg: dict) -> dict:
    return cfg | {s: {k: v for k, v in cfg[s].items() if k not in keys}
                  for s, keys in PLANNING_KEYS.items() if isinstance(cfg.get(s), dict)}


def stage_config(cfg: dict, stage: str) -> dict:
    """The part of `cfg` (one space's config, or the experiment's for a space-less stage) that
    `stage` reads."""
    cfg = cfg if stage in PLANNED_BY else _without_planning(cfg)
    return {k: cfg[k] for k in dict.fromkeys(READ_BY_ALL + STAGE_SECTIONS[stage]) if k in cfg}


def checkpoint_hash(cfg: dict, stage: str) -> str:
    """The short hash of the sections `stage`'s training depends on: its checkpoint folder."""
    return section_hash(cfg, *CHECKPOINT_SECTIONS[stage])


@lru_cache(maxsize=1)
def _file_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _space_schema(family: str) -> dict:
    """Family `family`'s space section: its own keys (its schema, a resource of its own so that its
    `$ref`s stay inside it), its name, and this space's overrides of the experiment's sections."""
    own = copy.deepcopy(families.space_schema(family))
    own.pop("$schema", None)  # validated as part of the config schema, with its defaults
    own["$id"] = f"urn:vitnas:families:{family}:space"
    own["type"] = "object"
    own["additionalProperties"] = False
    over = {k: {"description": f"this space's values of {k}, merged over the experiment's", "type": "object"}
            for k in SPACE_OVERRIDES}
    own["properties"] = {"family": {"const": family}} | own.get("properties", {}) | over
    return own


@lru_cache(maxsize=8)
def _schema(registry: tuple) -> dict:
    out = copy.deepcopy(_file_schema())
    names = [name for name, _ in registry]
    out["$defs"]["space"] = {
        "type": "object", "required": ["family"],
        "properties": {"family": {"type": "string", "enum": names}},
        "allOf": [{"if": {"properties": {"family": {"const": n}}, "required": ["family"]},
                   "then": {"$ref": f"#/$defs/space_{n}"}} for n in names]}
    out["$defs"] |= {f"space_{n}": _space_schema(n) for n in names}
    return out


def schema() -> dict:
    """The whole config schema: the file's, with a `space` of every registered family."""
    return _schema(tuple((n, id(families.space_schema(n))) for n in families.names()))


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


# Keys that changed name: an old config gets the new name in its one-line error.
RENAMED = {"health_images": "eval_images"}


def _describe(error: jsonschema.ValidationError, path=None) -> str:
    path = tuple(error.absolute_path) if path is None else path
    where = ".".join(str(p) for p in path) or "(top level)"
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        allowed = sorted(error.schema.get("properties", {}))
        if error.validator == "unevaluatedProperties":  # allowed keys also come through $ref
            ref = error.schema.get("$ref", "").rsplit("/", 1)[-1]
            allowed = sorted(set(allowed) | set(schema()["$defs"].get(ref, {}).get("properties", {})))
        extra = sorted(set(error.instance) - set(allowed))
        prefix = f"{where}." if path else ""
        sections = [k for k in extra if k in _file_schema()["properties"]]
        hint = ""
        if "family" in error.instance and sections:  # a space section holding an experiment-wide one
            hint = f" ({', '.join(sections)}: set for the whole experiment, at the top level)"
        renamed = [f"{k} is now {RENAMED[k]}" for k in extra if k in RENAMED]
        if renamed:
            hint = f" ({'; '.join(renamed)})"
        return (f"config: unknown key {', '.join(prefix + k for k in extra)}; "
                f"allowed keys here: {', '.join(allowed)}{hint}")
    if error.validator == "enum":
        return (f"config: {where} = {error.instance!r} is not allowed; choose one of "
                f"{', '.join('null' if v is None else str(v) for v in error.validator_value)}")
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
    overrides merged over the experiment's sections; validated. Errors name the key as written
    (`spaces.<name>.supernet.lr` when the space sets it)."""
    entry = cfg["spaces"].get(name)
    if entry is None:
        raise ConfigError(f"spaces: no active space {name!r}; choose one of {', '.join(active_spaces(cfg))}")
    over = {k: entry[k] for k in SPACE_OVERRIDES if k in entry}
    if "enabled" in over.get("ablation", {}):  # the rules declare the study's outputs experiment-wide
        raise ConfigError(f"spaces.{name}.ablation.enabled: the ablation study is switched on for the "
                          "whole experiment; set ablation.enabled at the top level")
    for section, values in over.items():  # a rule's threads come from the experiment's section
        if "threads" in values:
            raise ConfigError(f"config: spaces.{name}.{section}.threads cannot be set per space (the rules "
                              f"read {section}.threads for every space); set it at the top level")
    out = deep_merge({k: v for k, v in cfg.items() if k not in ("space", "space_name")}, over)
    out["space"] = {k: v for k, v in entry.items() if k not in SPACE_OVERRIDES}
    out["space_name"] = name

    def as_written(path: tuple) -> tuple:
        if path[:1] == ("space",):
            return ("spaces", name) + path[1:]
        node = over
        for key in path:  # a key this space sets itself
            if not isinstance(node, dict) or key not in node:
                return path
            node = node[key]
        return ("spaces", name) + path

    out = _check(out, as_written)
    search = out["search"]
    if isinstance(search["latency_vs_macs"], bool):  # true: every MACs budget, whatever the budgets are
        from .units import is_ms

        every = [b for b in search["budgets"] if not is_ms(b)]
        search["latency_vs_macs"] = every if search["latency_vs_macs"] else []
    return out


def _check(cfg: dict, as_written=tuple) -> dict:
    """A validated copy of `cfg` with defaults filled; `as_written` maps an error's key path to the
    path the user wrote it under."""
    cfg = copy.deepcopy(cfg)
    errors = sorted(_Validator(schema()).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        # A unknown key is the most telling error; a wrong value the next.
        errors.sort(key=lambda e: e.validator not in ("additionalProperties", "unevaluatedProperties"))
        raise ConfigError(_describe(errors[0], as_written(tuple(errors[0].absolute_path))))
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
    cfg = _without_planning(cfg)
    blob = json.dumps({s: cfg.get(s) for s in sections}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def model_names(cfg: dict, replicates: bool = False) -> list[str]:
    """Retrained models of one space: per budget the evolved architecture and its hand-designed
    baseline ("deit": the DeiT- or ViT-Res-shaped network of the family); with `replicates` (the
    replicates target) and retrain.compare_finetune also the evolved architecture fine-tuned from
    the export's inherited weights ("ft"); not with retrain.init: inherited, where evo is that
    model already and nothing is trained from scratch to compare with."""
    rt = cfg["retrain"]
    compare = replicates and rt["compare_finetune"] and rt["init"] == "scratch"
    kinds = ("evo", "ft", "deit") if compare else ("evo", "deit")
    return [f"{kind}-{budget}" for budget in cfg["search"]["budgets"] for kind in kinds]


def fine_tuned(cfg: dict, model: str) -> bool:
    """Whether retraining `model` starts from the export's inherited weights: ft always, evo with
    retrain.init: inherited (the hand-designed baseline was not searched: always from scratch)."""
    kind = model.split("-", 1)[0]
    return kind == "ft" or (kind == "evo" and cfg["retrain"]["init"] == "inherited")


def retrain_recipe(rt: dict, init: str) -> dict:
    """The training settings of a retraining that starts from `init`: retrain's, or with
    `inherited` its `finetune` section over them."""
    return rt | rt["finetune"] if init == "inherited" else rt
