"""Published numbers (config/references.yaml) and the published-vs-reproduced table, on fixed inputs."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, run
from vitnas import checks, config, published, references
from vitnas.arch import Arch
from vitnas.config import ConfigError
from vitnas.families import count
from vitnas.report import make_published_report

REFERENCES = REPO / "config" / "references.yaml"

SMALL = """\
papers: {ViTAS: "Su et al.", DeiT: "Touvron et al."}
conventions:
  timm: {label: timm / flop counter, description: "the flop counter"}
  timm_table: {label: timm results table, description: "timm's table"}
  vitas: {label: ViTAS counter, description: "classifier x196"}
settings: {top1: "ImageNet-1k val, 224 px", params: "all parameters", throughput: "as published"}
entries:
  deit-tiny:
    name: DeiT-Ti
    paper: DeiT
    source: timm tables
    sources: {macs.vitas: ViTAS's counter}
    arch: ARCH
    top1: 72.2
    params: 5.72M
    macs: {timm_table: 1.26G, timm: 1.2537G, vitas: 1.284G}
    throughput: 17674
    settings: {throughput: "RTX 4090, AMP, batch 1024"}
  vitas-c:
    name: ViTAS-C
    paper: ViTAS
    source: ViTAS README
    top1: 74.7
    top5: 92.0
    macs: {vitas: 1.3G}
"""


@pytest.fixture
def refs(tmp_path):
    path = tmp_path / "refs.yaml"
    path.write_text(SMALL.replace("ARCH", str(REPO / "config/archs/deit-tiny.json")))
    return references.load(path)


@pytest.fixture(scope="module")
def imagenet_vit():
    """The ViTAS paper config's space: ImageNet at 224 px, 1000 classes."""
    cfg = config.load(str(REPO / "config/config.yaml"), str(REPO / "config/imagenet_vitas.yaml"))
    return config.for_space(cfg, "vit")


def deit_tiny_metrics() -> dict:
    """A hand-built metrics.json of a retrained DeiT-Ti (timm's MACs and parameter count)."""
    arch = json.loads((REPO / "config/archs/deit-tiny.json").read_text())
    return {"model": "deit-1.3G", "kind": "deit", "budget": "1.3G", "top1": 70.0, "params": 5_717_416,
            "macs": 1_253_683_200, "throughput": 100.0, "throughput_device": "cpu (1 thread, batch 64)",
            "latency_torch_ms": 9.0, "latency_ort_ms": 4.0, "test_images": 50000, "arch": {k: arch[k] for k in ("family", "patch", "stages")}}


def test_matches_by_name_and_glob():
    match = {"vit": {"deit-1.3G": "deit-tiny", "evo-*": ["vitas-c", "vitas-b"]}, "resnas": None}
    models = {"vit": ["evo-1.0G", "deit-1.0G", "evo-1.3G", "deit-1.3G"], "resnas": ["evo-4M"]}
    assert published.matches(match, models) == [
        ("vit", "evo-1.0G", "vitas-c"), ("vit", "evo-1.0G", "vitas-b"), ("vit", "evo-1.3G", "vitas-c"),
        ("vit", "evo-1.3G", "vitas-b"), ("vit", "deit-1.3G", "deit-tiny")]
    assert published.matches({}, models) == []


def test_rows_side_by_side_with_differences_and_conventions(refs, imagenet_vit):
    record = published.reproduced_record("vit", deit_tiny_metrics(), {"model": "deit-1.3G", "AP": 30.0,
                                                                      "detector": "retinanet"}, imagenet_vit)
    rows = published.published_rows(refs, [("vit", "deit-1.3G", "deit-tiny")], {("vit", "deit-1.3G"): record})
    deit = rows[rows["published model"] == "DeiT-Ti"].set_index(["metric", "published convention"], drop=False)
    assert (deit["reproduced model"].dropna() == "vit/deit-1.3G").all() and len(deit) == 7

    top1 = deit.loc[("top-1 (%)", "ImageNet-1k val, 224 px")]
    assert (top1["published"], top1["reproduced"]) == (72.2, 70.0) and top1["difference"] == pytest.approx(-2.2)
    assert top1["reproduced convention"] == "ImageNet test split (50000 images, 224 px)"
    # MACs: under the published convention where this project has the counter (timm, ViTAS's),
    # under timm's otherwise, and each row says which.
    timm = deit.loc[("MACs (G)", "timm / flop counter")]
    assert timm["reproduced"] == pytest.approx(1.2536832) and timm["difference"] == pytest.approx(-1.68e-5)
    assert timm["source"] == "timm tables"
    table = deit.loc[("MACs (G)", "timm results table")]
    assert table["reproduced convention"] == "timm / flop counter"
    assert table["reproduced"] == pytest.approx(1.2536832) and table["difference"] == pytest.approx(-0.0063168)
    vitas = deit.loc[("MACs (G)", "ViTAS counter")]
    assert vitas["reproduced convention"] == "ViTAS counter" and vitas["source"] == "ViTAS's counter"
    assert vitas["reproduced"] == pytest.approx(1.28400384) and vitas["difference"] == pytest.approx(3.84e-6)
    params = deit.loc[("params (M)", "all parameters")]
    assert params["reproduced"] == pytest.approx(5.717416) and params["difference"] == pytest.approx(-0.002584)
    assert params["reproduced convention"] == "all parameters, 1000-class head"
    speed = deit.loc[("throughput (img/s)", "RTX 4090, AMP, batch 1024")]
    assert (speed["published"], speed["reproduced"], speed["difference"]) == (17674, 100.0, -17574)
    assert speed["reproduced convention"] == "cpu (1 thread, batch 64)"
    ap = rows[rows["metric"] == "box AP (%)"].iloc[0]  # reproduced, not published: no difference
    assert math.isnan(ap["published"]) and ap["reproduced"] == 30.0 and math.isnan(ap["difference"])
    assert ap["reproduced convention"] == "retinanet on COCO 2017 val"  # the paper config transfers to COCO
    # A published model nothing matches: its published rows, empty reproduced cells.
    vitas_c = rows[rows["published model"] == "ViTAS-C"]
    assert list(vitas_c["metric"]) == ["top-1 (%)", "top-5 (%)", "MACs (G)"]
    assert list(vitas_c["published"]) == [74.7, 92.0, 1.3] and vitas_c["reproduced"].isna().all()
    assert vitas_c["reproduced model"].isna().all() and vitas_c["difference"].isna().all()
    # As written: published values with their published decimals, reproduced values and
    # differences at the metric's precision.
    shown = published.published_table(rows)
    assert list(shown.columns) == published.COLUMNS
    deit = {c: [x if isinstance(x, str) else None for x in col]  # empty cells: None (or NaN in a str column)
            for c, col in shown[shown["published model"] == "DeiT-Ti"].items()}
    assert deit["published"] == ["72.2", "1.26", "1.2537", "1.284", "5.72", "17674", None]
    assert deit["reproduced"] == ["70.00", "1.2537", "1.2537", "1.2840", "5.717", "100", "30.00"]
    assert deit["difference"] == ["-2.20", "-0.0063", "0.0000", "0.0000", "-0.003", "-17574", None]
    assert list(shown.loc[shown["published model"] == "ViTAS-C", "published"]) == ["74.7", "92.0", "1.3"]


def test_written_formats_booktabs_and_labels(refs, imagenet_vit, tmp_path):
    record = published.reproduced_record("vit", deit_tiny_metrics(), None, imagenet_vit)
    stem = tmp_path / "tables" / "published"
    published.write_published(refs, [("vit", "deit-1.3G", "deit-tiny")], {("vit", "deit-1.3G"): record}, stem, 0)
    csv = pd.read_csv(stem.with_suffix(".csv"))
    assert list(csv.columns) == published.COLUMNS and len(csv) == 9
    md = stem.with_suffix(".md").read_text()
    assert "| DeiT-Ti" in md and "ViTAS counter" in md and "timm / flop counter" in md and "-0.0063" in md
    assert "difference = reproduced - published" in md
    tex = stem.with_suffix(".tex").read_text()
    assert all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{longtable}"))
    assert "(\\%)" in tex and "\\caption[]{(continued)}" in tex
    page = stem.with_suffix(".html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<tr") == len(csv) + 1


def test_default_run_writes_published_rows_only(tmp_path):
    """The embedded Fashion-MNIST run matches nothing: every published model, no reproduced values."""
    cfg = config.load(str(REPO / "config/config.yaml"))
    assert published.matched(cfg) == [] and published.input_files(cfg, tmp_path, 0) == []
    rows = make_published_report(tmp_path, cfg)
    refs = references.load(REFERENCES)
    assert rows["published model"].nunique() == len(refs.entries)
    assert rows["reproduced"].isna().all() and rows["published"].notna().all()
    assert "no reproduced model of this run matches" in (tmp_path / "tables/published.md").read_text()


def test_matched_model_is_read_from_its_results(tmp_path):
    """The rule's inputs are the matched models' files in the results layout, and the report reads
    exactly those: the retrained DeiT-Ti's top-1 beside the published one."""
    match = {"published": {"match": {"vit": {"deit-*": "deit-tiny"}}}}
    cfg = config.load(str(REPO / "config/config.yaml"), json.dumps(match))
    metrics, detection = published.input_files(cfg, str(tmp_path), 0)
    assert (metrics, detection) == (f"{tmp_path}/vit/seed0/retrain/deit-2M/metrics.json",
                                    f"{tmp_path}/vit/seed0/transfer/deit-2M/coco_eval.json")
    Path(metrics).parent.mkdir(parents=True)
    Path(metrics).write_text(json.dumps(deit_tiny_metrics() | {"model": "deit-2M", "budget": "2M"}))
    Path(detection).parent.mkdir(parents=True)
    Path(detection).write_text(json.dumps({"model": "deit-2M", "detector": "retinanet", "steps": 50, "AP": 30.0,
                                           "AP50": 50.0, "AP75": 30.0, "APs": None, "APm": 20.0, "APl": 40.0}))
    rows = make_published_report(tmp_path, cfg)
    deit = rows[(rows["reproduced model"] == "vit/deit-2M") & (rows["metric"] == "top-1 (%)")]
    assert list(deit["reproduced"]) == [70.0] and list(deit["difference"]) == [pytest.approx(70.0 - 72.2)]
    assert "vit/deit-2M" in (tmp_path / "tables/published.md").read_text()


def test_reference_file_holds_the_published_numbers():
    refs = references.load(REFERENCES)
    deit = refs.entries["deit-tiny"]
    assert (deit.top1, deit.params, deit.throughput) == (72.2, 5.72e6, 17674)
    assert deit.macs == {"timm_table": 1.26e9, "timm": pytest.approx(1.2537e9), "vitas": pytest.approx(1.284e9)}
    assert refs.entries["vitas-c"].macs == {"vitas": 1.3e9} and refs.entries["vitas-a"].top5 == 89.8
    assert refs.entries["vit-res-tiny"].macs == {"resnas": pytest.approx(1.7944e9)}
    assert refs.entries["autoformer-s"].params == pytest.approx(22.9e6)
    assert refs.entries["twins-svt-b"].macs["timm"] == pytest.approx(8.5626e9)
    assert refs.entries["vitas-v2-coco"].ap == 45.9
    for entry in refs.entries.values():
        assert entry.paper in refs.papers and set(entry.macs) <= set(refs.conventions)


def _decimals(x: float) -> int:
    text = f"{x:.6g}"
    return len(text.split(".")[1]) if "." in text else 0


def test_architecture_files_reproduce_the_published_counts():
    """Every entry with an architecture file: this project's counters give the published MACs (and
    parameters) to the published precision, in every convention they implement."""
    from vitnas.families import get

    refs = references.load(REFERENCES)
    checked = 0
    for entry in refs.entries.values():
        if entry.arch is None:
            continue
        arch = Arch.load(entry.arch)
        for conv, macs in entry.macs.items():
            if conv not in get(arch.family).Space.conventions:
                continue
            counted = count(arch, 224, 3, 1000, conv)["macs"] / 1e9
            assert abs(counted - macs / 1e9) <= 0.5 * 10 ** -_decimals(macs / 1e9) + 1e-12, (entry.key, conv)
            checked += 1
        if entry.params is not None:
            counted = count(arch, 224, 3, 1000)["params"] / 1e6
            assert abs(counted - entry.params / 1e6) <= 0.5 * 10 ** -_decimals(entry.params / 1e6) + 1e-12
    assert checked >= 9


@pytest.mark.parametrize("edit, message", [
    (("macs: {vitas: 1.3G}", "macs: {vitaz: 1.3G}"),
     "entries.vitas-c.macs: convention 'vitaz' is not under conventions; choose one of timm, timm_table, vitas"),
    (("paper: ViTAS\n", "paper: ViTAZ\n"), "entries.vitas-c.paper = 'ViTAZ' is not under papers"),
    (("params: 5.72M", "params: 5.72"),
     "entries.deit-tiny.params = 5.72 has the wrong type; expected a count with a unit"),
    (("macs: {vitas: 1.3G}", "macs: {vitas: 1.3 G}"), "entries.vitas-c.macs.vitas = '1.3 G' is not valid"),
    (("top5: 92.0", "top6: 92.0"), "unknown key top6 in entries.vitas-c"),
    (("top1: 74.7", "top1: 174.7"), "entries.vitas-c.top1 = 174.7 is out of range"),
    (("{macs.vitas: ViTAS's counter}", "{ap: x}"),
     "entries.deit-tiny.sources: 'ap' is not a metric this entry publishes"),
    (("  timm: {label", "  timx: {label"), "conventions.timm is missing"),
    (("    source: ViTAS README\n", ""), "entries.vitas-c: 'source' is a required property"),
])
def test_bad_reference_file_one_clear_line(tmp_path, edit, message):
    text = SMALL.replace("ARCH", str(REPO / "config/archs/deit-tiny.json"))
    assert edit[0] in text
    path = tmp_path / "refs.yaml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError, match=None) as e:
        references.load(path)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_arch_file_and_cli_error_without_traceback(tmp_path):
    path = tmp_path / "refs.yaml"
    path.write_text(SMALL.replace("ARCH", "archs/nowhere.json"))
    with pytest.raises(ConfigError, match="entries.deit-tiny.arch: no such file archs/nowhere.json"):
        references.load(path)
    r = run(["vitnas", "published", "--results", str(tmp_path), "--references", str(path)])
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "tables").exists()


@pytest.mark.parametrize("match, message", [
    ({"vit": {"evo-2M": "vitas-z"}}, "published.match.vit.evo-2M: unknown entry 'vitas-z'"),
    ({"vitt": {"evo-2M": "vitas-c"}}, "published.match.vitt: no space 'vitt' in spaces"),
])
def test_match_names_spaces_and_entries(match, message):
    with pytest.raises(ConfigError, match=message):
        cfg = config.load(str(REPO / "config/config.yaml"), json.dumps({"published": {"match": match}}))
        checks.check_experiment(cfg)
