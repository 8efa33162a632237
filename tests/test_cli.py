"""The `vitnas` command: help on every stage, show-arch, design-baseline."""
import json

import pytest

from conftest import REPO, run
from vitnas import cli, config
from vitnas.arch import Arch
from vitnas.families.vit.baseline import design_baseline
from vitnas.errors import SpaceError
from vitnas.families import build_space

STAGES = ["check-config", "prepare-data", "train-supernet", "search", "latency-vs-macs", "pareto-search", "design-baseline", "retrain",
          "compose-detection", "transfer", "figures", "show-arch", "reference", "ranking",
          "ablation-variant", "families", "published", "search-quality"]


def test_every_stage_has_help(capsys):
    for stage in STAGES:
        with pytest.raises(SystemExit) as e:
            cli.main([stage, "--help"])
        assert e.value.code == 0
        assert "usage: vitnas " + stage in capsys.readouterr().out


def test_show_arch_prints_layers_and_counts(tmp_path, capsys):
    cfg = config.validate({})
    space = build_space(cfg)
    arch = Arch.uniform(7, 48, 3, 4, 64, 128, max_layers=6, family="vit")
    (tmp_path / "a.json").write_text(arch.to_json())
    assert cli.main(["show-arch", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert f"{space.macs(arch) / 1e6:.3f} M MACs (timm convention)" in out and "depth 3;" in out
    assert out.count("identity") == 3 and out.count(" block ") == 3
    assert cli.main(["show-arch", str(tmp_path / "a.json"), "--json", "--convention", "vitas"]) == 0
    assert json.loads(capsys.readouterr().out) == {"family": "vit", "macs": space.macs(arch, "vitas"),
                                                   "params": space.params(arch), "convention": "vitas"}
    assert cli.main(["show-arch", str(tmp_path / "a.json"), "--convention", "resnas"]) == 1
    assert "not known for the vit family" in capsys.readouterr().err


def test_baseline_is_the_widest_within_budget():
    cfg = config.validate({})
    space = build_space(cfg)
    arch = design_baseline(space, "2M", cfg["space"]["baseline"])
    wider = Arch.uniform(4, arch.embed + 2, 4, 2, arch.embed + 2, 4 * (arch.embed + 2), family="vit")
    assert space.macs(arch) <= 2e6 < space.macs(wider)
    assert arch.depth == 4 and {l.heads for l in arch.blocks} == {2}
    with pytest.raises(SpaceError, match="needs .* MACs, above the budget 1K"):
        design_baseline(space, "1K", cfg["space"]["baseline"])


def test_check_config_prints_the_range():
    r = run(["vitnas", "check-config", "--config", str(REPO / "config/config.yaml")])
    assert r.returncode == 0 and "space vit (vit) MACs range [340.9K, 14.26M]" in r.stdout


def test_a_lone_space_section_is_one_space_but_not_beside_spaces(tmp_path):
    one = config.validate({"space": {"patch_sizes": [7]}})
    assert one["space_name"] == "vit" and list(one["spaces"]) == ["vit"] and one["space"]["patch_sizes"] == [7]
    (tmp_path / "both.yaml").write_text("space: {family: vit}\n")
    r = run(["vitnas", "check-config", "--config", str(REPO / "config/config.yaml"), str(tmp_path / "both.yaml")])
    assert r.returncode == 1 and "both space and spaces are given; put the space under spaces.<name>" in r.stderr
    assert "Traceback" not in r.stderr
