"""Cross-checks of a validated config that need more than its schema: each space's family (budgets,
windows, baselines, sampling, ablation arms, the supernet switches it reads), the published
numbers, and the data set's size. Run before anything else: by the Snakefile when it plans a
run, and by `vitnas check-config`. Seconds at most; each problem is one line naming the key.
"""
from __future__ import annotations

from . import config as configuration
from . import families, published
from .data import split_sizes
from .errors import ConfigError, SpaceError
from .spaces import format_macs, parse_macs, sampling_record, supernet_budget, window
from .units import is_ms
from .variants import selected_variants


def space_configs(cfg: dict) -> list[dict]:
    """The config of every space `cfg` runs (itself when it is already one space's)."""
    if "space" in cfg:
        return [cfg]
    return [configuration.for_space(cfg, name) for name in configuration.active_spaces(cfg)]


def check_switches(cfg: dict, scfg: dict) -> None:
    """Refuse a `supernet` key that the space's family declares it does not read (its `IGNORES`,
    vitnas.families.contract): set in the space's own `supernet` section, or inherited from the
    experiment's with a value other than the default."""
    family, name = scfg["space"]["family"], scfg["space_name"]
    own = ((cfg.get("spaces") or {}).get(name) or {}).get("supernet", {})
    defaults = configuration.validate({})["supernet"]
    ignored = families.get(family).IGNORES
    for key in ignored:
        if not (key in own or scfg["supernet"][key] != defaults[key]):
            continue
        why = f"the {family} family does not read {key} (it ignores {', '.join(ignored)})"
        if key in own:
            raise ConfigError(f"config: spaces.{name}.supernet.{key} = {own[key]!r}: {why}; remove it")
        raise ConfigError(f"config: supernet.{key} = {scfg['supernet'][key]!r} reaches space {name}, but {why}; "
                          f"set it under spaces.<name>.supernet of the spaces that read it")
    # A family whose supernet has no patch head has none in its retrained model either.
    if scfg["retrain"]["patch_mixup"] and "patch_mixup" in ignored:
        own_rt = "patch_mixup" in ((cfg.get("spaces") or {}).get(name) or {}).get("retrain", {})
        where = f"spaces.{name}.retrain" if own_rt else "retrain"
        readers = [n for n in families.names() if "patch_mixup" not in families.get(n).IGNORES]
        raise ConfigError(f"config: {where}.patch_mixup = true reaches space {name}, but the {family} family has no "
                          f"patch head (families with one: {', '.join(readers)}); "
                          + ("remove it" if own_rt else "set it under spaces.<name>.retrain of the spaces that have one"))


def check_search_mode(scfg: dict) -> None:
    """One Pareto search serves every budget, so every budget must read the same supernet."""
    if scfg["search"]["mode"] == "pareto" and scfg["supernet"]["per_budget"]:
        raise ConfigError("config: search.mode = 'pareto' needs one supernet for every budget; set "
                          "supernet.per_budget: false (or search.mode: per_budget)")


def check_constraint(scfg: dict, space) -> bool:
    """Budgets in the constraint's unit; a latency search needs the family's latency blocks and one
    supernet for every budget (a latency has no MACs window to sample a supernet for). Returns
    whether the search is latency-constrained."""
    latency = scfg["search"]["constraint"] == "latency"
    wrong = [b for b in scfg["search"]["budgets"] if is_ms(b) != latency]
    if wrong:
        unit = "milliseconds (0.8ms)" if latency else "MACs (2M)"
        raise ConfigError(f"config: search.budgets: {wrong[0]!r} is not in {unit}, the unit of search.constraint = "
                          f"{scfg['search']['constraint']!r}; give every budget in {unit} or change search.constraint")
    if latency and not space.has_latency:
        space.latency_blocks(space.smallest())  # the family's one-line refusal
    if latency and scfg["supernet"]["per_budget"]:
        raise ConfigError("config: search.constraint = 'latency' needs one supernet for every budget; set "
                          "supernet.per_budget: false (or search.constraint: macs)")
    return latency


def check_latency_vs_macs(cfg: dict, scfg: dict, space) -> None:
    """search.latency_vs_macs: MACs budgets of the space's own MACs search, whose family predicts
    latency and whose search starts by sampling (a latency search cannot shrink by MACs). A
    per-budget supernet is fine: the latency search reads the MACs budget's supernet and sampler."""
    listed, sc, name = scfg["search"]["latency_vs_macs"], scfg["search"], scfg["space_name"]
    if not listed:
        return
    own = "latency_vs_macs" in (((cfg.get("spaces") or {}).get(name) or {}).get("search") or {})
    key = f"spaces.{name}.search.latency_vs_macs" if own else f"search.latency_vs_macs (space {name})"
    off = "remove it" if own else "set it under spaces.<name>.search of the spaces it is for"
    if sc["constraint"] != "macs":
        raise ConfigError(f"config: {key}: compares with a MACs search, but search.constraint = "
                          f"{sc['constraint']!r}; set search.constraint: macs or {off}")
    missing = [b for b in listed if b not in sc["budgets"]]
    if missing:
        raise ConfigError(f"config: {key}: {missing[0]!r} is not in search.budgets ({', '.join(sc['budgets'])}); "
                          "list only budgets that are searched")
    if not space.has_latency:
        raise ConfigError(f"config: {key}: the {space.family} family has no latency blocks "
                          f"(Space.latency_blocks) to predict latency with; {off}")
    if sc["init"] == "shrink":
        raise ConfigError(f"config: {key}: a latency search draws its first population (search.init: sample), but "
                          f"search.init = 'shrink' shrinks by MACs; set search.init: sample or {off}")


def check_workflow(cfg: dict) -> None:
    """What the stages run but the workflow's rules do not yet: a latency-constrained search
    (`vitnas search` runs it; the rules would design and retrain a hand-designed baseline per
    budget, which a latency budget does not have)."""
    for scfg in space_configs(cfg):
        if scfg["search"]["constraint"] == "latency":
            raise ConfigError(f"config: spaces.{scfg['space_name']}: search.constraint = 'latency' runs with "
                              "`vitnas search` only, not in the workflow yet; set search.constraint: macs here")


def check_known_answer(cfg: dict) -> None:
    """known_answer.space names a space of the experiment whose encodings the benchmark holds."""
    from . import known_answer

    name = cfg["known_answer"]["space"]
    if name is None:
        return
    active = configuration.active_spaces(cfg)
    if name not in active:
        raise ConfigError(f"config: known_answer.space = {name!r} is not a space of this experiment "
                          f"({', '.join(active)}); name one of them or set it to null")
    scfg = configuration.for_space(cfg, name)
    if scfg["space"]["family"] != known_answer.FAMILY:
        raise ConfigError(f"config: known_answer.space = {name!r} is a {scfg['space']['family']} space, but the "
                          f"known answer (NAS-Bench-Macro) is for the {known_answer.FAMILY} family; name a "
                          f"{known_answer.FAMILY} space or set it to null")
    known_answer.arms(scfg)


def check_experiment(cfg: dict) -> None:
    """Checks that need each space: its family's switches, divisibility, budgets inside the space's
    MACs range, a search window that holds networks and the baseline, how each supernet samples,
    the ablation arms; then the published numbers and that published.match names what they hold."""
    for scfg in space_configs(cfg):
        check_switches(cfg, scfg)
        check_search_mode(scfg)
        try:
            space = families.build_space(scfg)
            check_latency_vs_macs(cfg, scfg, space)
            for name in [] if check_constraint(scfg, space) else scfg["search"]["budgets"]:
                space.check_budget(name, parse_macs(name))
                lo, hi = window(scfg, name)
                if not space.deepest_in_window(lo, hi):
                    raise SpaceError(f"search.budgets: no network of the space has MACs in the window of "
                                     f"{name}, [{format_macs(lo)}, {format_macs(hi)}]; lower "
                                     "search.min_budget_fraction")
                families.design_baseline(scfg, space, name)
            for name in dict.fromkeys(supernet_budget(scfg, b) for b in scfg["search"]["budgets"]):
                sampling_record(scfg, space, name)
            if scfg["ablation"]["enabled"]:
                selected_variants(scfg)  # unknown variant names stop here
        except SpaceError as e:
            raise SpaceError(f"spaces.{scfg['space_name']}: {e}") from None
    check_known_answer(cfg)
    published.check(cfg, published.load_references(cfg))


def check_data(cfg: dict, data_dir=None) -> dict | None:
    """Checks that need the data set's size: every training section's batch fits in the training
    split. Sizes come from the prepared split (`data_dir`) or the raw data; without either (a dry
    run on a machine without the data) nothing is checked. Returns the split sizes (or None)."""
    sizes = split_sizes(cfg, data_dir)
    if sizes is None:
        return None
    for scfg in space_configs(cfg):
        own = cfg.get("spaces", {}).get(scfg["space_name"]) or {}
        for section in ("supernet", "retrain"):
            batch = scfg[section]["batch_size"]
            if batch > sizes["train"]:
                key = (f"spaces.{scfg['space_name']}." if "batch_size" in own.get(section, {}) else "") + section
                raise ConfigError(f"{key}.batch_size: {batch} exceeds the {sizes['train']} images of the training "
                                  "split; lower it (or raise data.train_limit)")
    return sizes
