"""Configuration on the ground floor: one-line errors naming the key (from `vitnas check-config`
and `snakemake -n`), the family space schemas, which sections each stage reads, no import cycle."""
import json
import re

import pytest

from conftest import REPO, run
from vitnas import checks, config, families
from vitnas.errors import ConfigError

# Each malformed config, and the one line both tools must print about it.
BAD = {
    "unknown_family": ("spaces: {vit: {family: swin}}",
                       "config: spaces.vit.family = 'swin' is not allowed; choose one of vit, resnas, twins, macro"),
    "misplaced_data": ("spaces: {vit: {data: {search_per_class: 10}}}",
                       "config: unknown key spaces.vit.data; allowed keys here: ablation, baseline, embed_dims, "
                       "family, heads, max_layers, min_depth, mlp_dims, patch_sizes, qkv_dims, reference, retrain, "
                       "search, supernet, transfer (data: set for the whole experiment, at the top level)"),
    "per_space_threads": ("spaces: {vit: {supernet: {threads: 4}}}",
                          "config: spaces.vit.supernet.threads cannot be set per space (the rules read "
                          "supernet.threads for every space); set it at the top level"),
    "switch_twins_ignores": ("spaces: {twins: {supernet: {private_qk: false}}}",
                             "config: spaces.twins.supernet.private_qk = False: the twins family does not read "
                             "private_qk (it ignores private_tokens, private_qk, warmup_epochs, skip_unlock, multi_arch_draw, "
                             "unlock_per_epoch, resort_at_warmup_end, patch_mixup); remove it"),
    "retrain_baseline_gone": ("retrain: {baseline: {depth: 3}}", "config: unknown key retrain.baseline;"),
    "renamed_key": ("supernet: {health_images: 10}", "(health_images is now eval_images)"),
    "retrain_patch_mixup": ("spaces: {twins: {retrain: {patch_mixup: true}}}",
                            "config: spaces.twins.retrain.patch_mixup = true reaches space twins, but the twins "
                            "family has no patch head (families with one: resnas); remove it"),
    "pareto_per_budget": ("search: {mode: pareto}\nsupernet: {per_budget: true}",
                          "config: search.mode = 'pareto' needs one supernet for every budget; set "
                          "supernet.per_budget: false (or search.mode: per_budget)"),
}


def _one_line(text: str, message: str) -> None:
    lines = [line for line in text.strip().splitlines() if message in line]
    assert len(lines) == 1 and "Traceback" not in text, text
    assert lines[0].endswith(message) or message.endswith(";"), lines[0]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_one_line_naming_the_key_from_check_config(tmp_path, case):
    text, message = BAD[case]
    (tmp_path / "bad.yaml").write_text(text + "\n")
    r = run(["vitnas", "check-config", "--skip-data", "--config", str(REPO / "config/config.yaml"),
             str(tmp_path / "bad.yaml")], timeout=120)
    assert r.returncode == 1
    _one_line(r.stderr, message)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unknown_family", "misplaced_data"])
def test_bad_config_is_one_line_naming_the_key_from_snakemake(tmp_path, case):
    text, message = BAD[case]
    (tmp_path / "bad.yaml").write_text(text + "\n")
    r = run(["snakemake", "-n", "--configfile", str(tmp_path / "bad.yaml"), "-d", str(tmp_path),
             "-s", str(REPO / "Snakefile")], timeout=120)
    assert r.returncode != 0
    _one_line(r.stdout + r.stderr, message)
    assert not (tmp_path / "results").exists()


def test_an_override_error_names_the_key_the_space_sets():
    with pytest.raises(ConfigError, match=r"^config: spaces\.vit\.supernet\.lr = -1 is out of range"):
        config.for_space(config.load(str(REPO / "config/config.yaml"), '{"spaces": {"vit": {"supernet": {"lr": -1}}}}'),
                         "vit")
    with pytest.raises(ConfigError, match=r"^config: spaces\.resnas\.patch = 'x' has the wrong type"):
        config.validate({"spaces": {"resnas": {"patch": "x"}}})


def test_an_inherited_switch_is_refused_only_when_changed():
    cfg = config.load(str(REPO / "config/config.yaml"))
    for name in config.active_spaces(cfg):  # the defaults reach every family: accepted
        checks.check_switches(cfg, config.for_space(cfg, name))
    off = config.load(str(REPO / "config/config.yaml"), '{"supernet": {"private_tokens": false}}')
    checks.check_switches(off, config.for_space(off, "vit"))  # vit reads it
    with pytest.raises(ConfigError, match=r"^config: supernet\.private_tokens = False reaches space resnas, but "
                                          r"the resnas family does not read private_tokens \(it ignores .*\)"):
        checks.check_switches(off, config.for_space(off, "resnas"))


def test_fine_tuned_models_only_in_the_replicates_target_with_the_switch():
    on = config.validate({"search": {"budgets": ["2M", "4M"]}, "retrain": {"compare_finetune": True}})
    off = config.validate({"search": {"budgets": ["2M", "4M"]}})
    assert config.model_names(off) == config.model_names(off, replicates=True) == config.model_names(on) == \
        ["evo-2M", "deit-2M", "evo-4M", "deit-4M"]
    assert config.model_names(on, replicates=True) == ["evo-2M", "ft-2M", "deit-2M", "evo-4M", "ft-4M", "deit-4M"]
    # ft starts from the export's weights even though init is scratch; evo only with init: inherited
    assert [m for m in config.model_names(on, True) if config.fine_tuned(on, m)] == ["ft-2M", "ft-4M"]
    inherited = config.validate({"retrain": {"init": "inherited"}})
    assert config.fine_tuned(inherited, "evo-2M") and not config.fine_tuned(inherited, "deit-2M")
    # init: inherited (over config/config.yaml's compare_finetune: true): evo is the fine-tuned model,
    # nothing is trained from scratch, so no ft models (no refusal: the switch has nothing to add)
    both = config.deep_merge(on, {"retrain": {"init": "inherited"}})
    assert config.model_names(config.validate(both), replicates=True) == ["evo-2M", "deit-2M", "evo-4M", "deit-4M"]


@pytest.mark.parametrize("section, key, off_value", [("retrain", "compare_finetune", False),
                                                     ("search", "latency_vs_macs", [])])
def test_the_switch_is_no_rerun_trigger_and_no_new_checkpoint(section, key, off_value):
    """compare_finetune and latency_vs_macs plan jobs, they change none: only the tables' stage reads
    them (a results folder made before either existed reruns nothing when it appears)."""
    cfg = config.for_space(config.load(str(REPO / "config/config.yaml")), "resnas")
    off = config.deep_merge(cfg, {section: {key: off_value}})
    assert cfg[section][key] and cfg[section][key] != off_value
    for stage in config.STAGE_SECTIONS:
        same = config.stage_config(cfg, stage) == config.stage_config(off, stage)
        assert same == (stage != "figures"), stage
        assert key not in config.stage_config(cfg, stage).get(section, {}) or stage == "figures"
    for stage in config.CHECKPOINT_SECTIONS:
        assert config.checkpoint_hash(cfg, stage) == config.checkpoint_hash(off, stage), stage
    assert config.checkpoint_hash(config.deep_merge(cfg, {"retrain": {"lr": 0.5}}), "retrain") != \
        config.checkpoint_hash(cfg, "retrain")


def test_space_schemas_come_from_the_family_packages():
    for name in families.names():
        schema = families.space_schema(name)
        assert (REPO / f"src/vitnas/families/{name}/space.schema.yaml").is_file()
        assert "baseline" in schema["properties"] and "family" not in schema["properties"]
    assert config.validate({"spaces": {"resnas": {}}})["space"]["stem_channels"] == 8  # its default
    assert "vit_space" not in config.schema()["$defs"] and "space_overrides" not in config.schema()["$defs"]


def test_a_registered_family_validates_with_its_own_schema():
    toy = {"type": "object", "properties": {"width": {"type": "integer", "minimum": 1, "default": 3}}}
    families.register("toy", "vitnas.families.vit", toy)
    try:
        assert "toy" in families.names()
        cfg = config.validate({"spaces": {"toy": {"supernet": {"lr": 0.1}}}})
        assert cfg["space"] == {"family": "toy", "width": 3} and cfg["supernet"]["lr"] == 0.1
        with pytest.raises(ConfigError, match=r"^config: spaces\.toy\.width = 0 is out of range"):
            config.validate({"spaces": {"toy": {"width": 0}}})
    finally:
        families._PACKAGES.pop("toy"), families._SCHEMAS.pop("toy")
    with pytest.raises(ConfigError, match="choose one of vit, resnas, twins, macro$"):
        config.validate({"spaces": {"toy": {}}})


# Each rule's sections before STAGE_SECTIONS, as common.smk listed them (besides those every stage reads).
OLD_RULE_SECTIONS = {
    "prepare_data": (), "train_supernet": ("search",), "ranking": ("search", "reference"), "search": ("search",),
    "random_search": ("search",), "design_baseline": ("search", "retrain"),
    "latency_vs_macs": ("search",),  # issue 19 §4: a new rule
    # issue 19: retraining also writes model.onnx and measures latency (a new output, so its jobs
    # rerun anyway, resuming from their finished checkpoints: CHECKPOINT_SECTIONS leaves these out)
    "retrain": ("retrain", "onnx", "latency"),
    "export": ("retrain", "onnx", "latency"),
    "reference_seed": ("search", "retrain", "reference"), "reference": ("search", "retrain", "reference"),
    "compose_detection": ("transfer",), "transfer": ("retrain", "transfer"),
    "ablation_supernet": ("search", "retrain", "reference", "ablation"),
    "ablation_ranking": ("search", "retrain", "reference", "ablation"),
    "ablation_search": ("search", "retrain", "reference", "ablation"),
    # + known_answer (issue 18): whether the space's claims table carries the known-answer study's
    "figures": ("search", "retrain", "reference", "ablation", "figures", "known_answer"),
    "replicates_report": ("search", "retrain", "reference", "ablation", "figures", "known_answer"),
}


def _rule_stages() -> dict[str, str]:
    """Rule -> the stage its `cfg=stage_config(...)` param names, read from the rule files."""
    out = {}
    for path in (REPO / "workflow/rules").glob("*.smk"):
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", path.read_text(), re.M | re.S):
            found = re.search(r'cfg=stage_config\("(\w+)"\)', body)
            if found:
                out[rule] = found.group(1)
    return out


def test_every_rule_passes_the_same_json_as_before():
    """The param is a rerun trigger: it must not change for any rule or space of config/config.yaml."""
    stages = _rule_stages()
    assert set(stages) == set(OLD_RULE_SECTIONS)
    cfg = config.load(str(REPO / "config/config.yaml"))
    keys = ("experiment", "seed", "device", "data", "space", "space_name", "supernet")
    for rule, sections in OLD_RULE_SECTIONS.items():
        scfgs = [cfg] if rule in ("prepare_data", "compose_detection") else \
            [config.for_space(cfg, n) for n in config.active_spaces(cfg)]
        for scfg in scfgs:
            if rule not in ("figures", "replicates_report"):  # planning keys: the tables' only
                scfg = scfg | {s: {k: v for k, v in scfg[s].items() if k not in planning}
                               for s, planning in config.PLANNING_KEYS.items() if s in scfg}
            old = json.dumps({k: scfg[k] for k in dict.fromkeys(keys + sections) if k in scfg}, sort_keys=True)
            assert json.dumps(config.stage_config(scfg, stages[rule]), sort_keys=True) == old, rule


def test_checkpoint_folders_keep_their_keys():
    """A stage resumes from the folder the CLI keyed before CHECKPOINT_SECTIONS (same sections)."""
    cfg = config.for_space(config.load(str(REPO / "config/config.yaml")), "vit")
    old = {"train_supernet": ("data", "space", "supernet", "search"), "search": ("data", "space", "supernet", "search"),
           "retrain": ("data", "space", "retrain"), "transfer": ("data", "space", "retrain", "transfer"),
           "reference": ("data", "space", "search", "retrain", "reference"),
           "ablation": ("data", "space", "supernet", "search", "retrain", "ablation")}
    for stage, sections in old.items():
        assert config.checkpoint_hash(cfg, stage) == config.section_hash(cfg, "seed", *sections), stage
    changed = config.deep_merge(cfg, {"reference": {"steps": 7}})  # read by the rule, not by retraining
    assert config.checkpoint_hash(changed, "retrain") == config.checkpoint_hash(cfg, "retrain")
    assert config.checkpoint_hash(changed, "reference") != config.checkpoint_hash(cfg, "reference")
