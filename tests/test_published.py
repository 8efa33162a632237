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


FIGURES = '{"figures": {"formats": ["png"], "dpi": 50}}'


class FakeTimer:
    """Stands in for `published_latency.time_network`: builds and times nothing; a network's
    "latency" is its parameter count in millions (counted, not built), so each gets its own number.
    Records (ms, input, threads, warmup, repeats) per call."""

    def __init__(self):
        self.calls = []

    def __call__(self, arch, inp, threads, warmup, repeats):
        ms = count(arch, *inp)["params"] / 1e6
        self.calls.append((ms, tuple(inp), threads, warmup, repeats))
        return {"median_ms": ms, "iqr_ms": 0.0}


@pytest.fixture
def fake_timer():
    return FakeTimer()


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


def test_default_run_writes_published_rows_only(tmp_path, fake_timer):
    """The embedded Fashion-MNIST run matches nothing: every published model, no reproduced values;
    a latency row for every entry with an architecture file, timed at its published 224 px."""
    cfg = config.load(str(REPO / "config/config.yaml"), FIGURES)
    assert published.matched(cfg) == [] and published.input_files(cfg, tmp_path, 0) == []
    rows = make_published_report(tmp_path, cfg, timer=fake_timer)
    refs = references.load(REFERENCES)
    assert rows["published model"].nunique() == len(refs.entries)
    assert rows["reproduced"].isna().all() and rows["published"].notna().all()
    assert "no reproduced model of this run matches" in (tmp_path / "tables/published.md").read_text()
    with_arch = [e.name for e in refs.entries.values() if e.arch is not None]
    assert list(rows.loc[rows["_metric"] == "latency", "published model"]) == with_arch
    assert {call[1:] for call in fake_timer.calls} == {((224, 3, 1000), 1, 1, 3)}  # the published input, defaults
    assert (tmp_path / "figures/published_latency.png").is_file()


def test_matched_model_is_read_from_its_results(tmp_path):
    """The rule's inputs are the matched models' files in the results layout, and the report reads
    exactly those: the retrained DeiT-Ti's top-1 beside the published one."""
    match = {"published": {"match": {"vit": {"deit-*": "deit-tiny"}}}}
    cfg = config.load(str(REPO / "config/config.yaml"), json.dumps(match), FIGURES)
    metrics, detection = published.input_files(cfg, str(tmp_path), 0)
    assert (metrics, detection) == (f"{tmp_path}/vit/seed0/retrain/deit-2M/metrics.json",
                                    f"{tmp_path}/vit/seed0/transfer/deit-2M/coco_eval.json")
    Path(metrics).parent.mkdir(parents=True)
    Path(metrics).write_text(json.dumps(deit_tiny_metrics() | {"model": "deit-2M", "budget": "2M"}))
    Path(detection).parent.mkdir(parents=True)
    Path(detection).write_text(json.dumps({"model": "deit-2M", "detector": "retinanet", "steps": 50, "AP": 30.0,
                                           "AP50": 50.0, "AP75": 30.0, "APs": None, "APm": 20.0, "APl": 40.0}))
    rows = make_published_report(tmp_path, cfg, timer=FakeTimer())
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


# ---------------------------------------------------------------------------------------- latency

TINY_REFS = """\
papers: {P: "a paper"}
conventions: {timm: {label: timm / flop counter, description: "the flop counter"}}
entries:
  small:
    name: Small
    paper: P
    source: s
    arch: small.json
    top1: 70.0
  wide:
    name: Wide
    paper: P
    source: s
    arch: wide.json
    macs: {timm: 1.0M}
  paper-only:
    name: Paper-only
    paper: P
    source: s
    top1: 75.0
"""


def tiny_arch(embed: int, layers: int) -> dict:
    """A DeiT-shaped network at 32 px, 10 classes: built in milliseconds."""
    layer = {"heads": 2, "qkv": embed, "mlp": 2 * embed, "identity": False}
    return {"family": "vit", "patch": 8, "stages": [{"embed": embed, "layers": [layer] * layers}],
            "input": {"img_size": 32, "in_chans": 3, "num_classes": 10}}


@pytest.fixture
def tiny_refs(tmp_path):
    for name, arch in (("small", tiny_arch(16, 1)), ("wide", tiny_arch(32, 2))):
        (tmp_path / f"{name}.json").write_text(json.dumps(arch))
    (tmp_path / "refs.yaml").write_text(TINY_REFS)
    return tmp_path / "refs.yaml"


def test_published_stage_times_exactly_the_entries_with_an_arch(tmp_path, tiny_refs, fake_timer):
    """Latency rows for the entries with an architecture file (with or without a top-1), none for
    the others; each at its arch file's input, with the configured threads, warm-up and repeats;
    the record names the machine; the figure draws the published top-1 against it."""
    cfg = config.load(str(REPO / "config/config.yaml"), FIGURES,
                      '{"published": {"latency": {"warmup": 0, "repeats": 3}}}')
    root = tmp_path / "results"
    rows = make_published_report(root, cfg, tiny_refs, threads=2, timer=fake_timer)
    latency = rows[rows["_metric"] == "latency"].set_index("published model")
    assert list(latency.index) == ["Small", "Wide"]
    small, wide = sorted(c[0] for c in fake_timer.calls)
    assert list(latency["published"]) == [small, wide] and small < wide
    assert {c[1:] for c in fake_timer.calls} == {((32, 3, 10), 2, 0, 3)}
    assert (latency["metric"] == "latency (ms), batch 1, measured here").all()
    assert latency["published convention"].str.match(r"torch eager, batch 1, 32 px, .+ 2 threads, median of 3$").all()
    assert latency["source"].str.contains("measured by this project").all() and latency["reproduced"].isna().all()

    record = json.loads((root / "tables/published_latency.json").read_text())
    assert set(record["models"]) == {"small", "wide"} and record["repeats"] == 3
    assert record["machine"]["device"] == "cpu" and record["machine"]["threads"] == 2
    assert {"device_name", "torch", "python", "host"} <= set(record["machine"])
    assert record["models"]["small"] == {"input": {"img_size": 32, "in_chans": 3, "num_classes": 10},
                                         "median_ms": small, "iqr_ms": 0.0}
    assert (root / "figures/published_latency.png").stat().st_size > 1000
    md = (root / "tables/published.md").read_text()
    assert "latency (ms), batch 1, measured here" in md and "not published" in md


def test_latency_figure_draws_published_and_same_input_reproduced_points(tiny_refs):
    """Published points: entries with a top-1 and a latency measured here; a matched reproduced
    model joins them only at the input of the entry it is matched with."""
    from vitnas.published_latency import figure_points, latency_figure

    refs = references.load(tiny_refs)
    record = {"machine": {"device_name": "a CPU", "threads": 1}, "repeats": 3, "models": {
        "small": {"input": {"img_size": 32, "in_chans": 3, "num_classes": 10}, "median_ms": 2.0},
        "wide": {"input": {"img_size": 32, "in_chans": 3, "num_classes": 10}, "median_ms": 4.0},
        "vit/evo-2M": {"input": {"img_size": 32, "in_chans": 3, "num_classes": 10}, "median_ms": 3.0},
        "vit/deit-2M": {"input": {"img_size": 28, "in_chans": 1, "num_classes": 10}, "median_ms": 1.0}}}
    reproduced = {("vit", "evo-2M"): {"top1": 72.5, "input": (32, 3, 10)},
                  ("vit", "deit-2M"): {"top1": 90.0, "input": (28, 1, 10)}}
    pairs = [("vit", "evo-2M", "small"), ("vit", "deit-2M", "small")]
    points = figure_points(refs, record, pairs, reproduced)
    assert list(zip(points["model"], points["top1"], points["latency_ms"])) == [
        ("Small", 70.0, 2.0), ("vit/evo-2M", 72.5, 3.0)]  # Wide: no top-1; Paper-only: no arch; deit: 28 px
    (ax,) = latency_figure(points, record["machine"]).axes
    assert sorted(tuple(xy) for c in ax.collections for xy in c.get_offsets()) == [(2.0, 70.0), (3.0, 72.5)]
    assert ax.get_xscale() == "log" and "a CPU, 1 thread" in ax.get_xlabel()

    # In the table: the difference only where both sides were timed the same way.
    rows = published.published_rows(refs, pairs, {k: v | {"space": k[0], "model": k[1]} for k, v in reproduced.items()},
                                    record)
    lat = rows[rows["_metric"] == "latency"].set_index("reproduced model")
    assert lat.loc["vit/evo-2M", "difference"] == 1.0 and math.isnan(lat.loc["vit/deit-2M", "difference"])


def test_real_timer_builds_and_times_a_published_arch(tiny_refs, monkeypatch):
    """Without a stand-in: the network of the arch file, built and timed by vitnas.latency."""
    from vitnas import latency
    from vitnas.published_latency import arch_file, measure_all

    calls, real = [], latency.measure
    monkeypatch.setattr(latency, "measure",
                        lambda model, *args: calls.append((type(model).__name__, args)) or real(model, *args))
    record = measure_all({"small": arch_file(tiny_refs.parent / "small.json")}, 1, 0, 3)
    (model,) = record["models"].values()
    assert model["median_ms"] > 0 and model["iqr_ms"] >= 0 and model["input"]["img_size"] == 32
    assert calls == [("ViT", (None, 32, 3, [1], 1, 0, 3))]  # torch only (no ONNX), batch 1
    assert record["machine"]["threads"] == 1 and record["repeats"] == 3


@pytest.mark.parametrize("edit, message", [
    ({"repeats": 1}, "repeats"), ({"warmup": -1}, "warmup"), ({"repeat": 5}, "repeat")])
def test_bad_latency_settings_one_line(edit, message):
    with pytest.raises(ConfigError) as e:
        config.load(str(REPO / "config/config.yaml"), json.dumps({"published": {"latency": edit}}))
    assert message in str(e.value) and "\n" not in str(e.value)
