"""What a run costs before it runs: per rule of the workflow, the training and evaluation FLOPs, the
hours on a given device, and the data read. Torch-free, from the config alone (`vitnas plan`).

Counting:
- FLOPs = 2 x MACs (a multiply-add is two operations); MACs are the families' analytic counts
  (the "timm" convention, what `torch.utils.flop_counter` measures / 2 on the exported model).
- A training image costs 3 x its forward FLOPs (forward, and a backward of about twice the
  forward); an evaluated image costs 1 x. Training images = steps x batch, steps =
  `max_steps` or ceil(epochs x (training images // batch)), as the engine counts them.
- A supernet step costs the mean MACs of the sub-networks it samples: the mean over `samples`
  seeded draws of the supernet's own sampler (`vitnas.spaces.sampler`, the identity probability
  it finds included), spread evenly over the run's epochs so that progressive unlocking's larger
  early networks count; k sub-networks per batch (`archs_per_batch`) split the batch, so the mean
  over all k is the per-image cost. Bilateral sharing runs two paths: counted twice (an upper
  bound: at full width it runs one).
- A searched network's MACs are unknown before the search: its budget C is the upper bound (the
  search candidates', the evolved network's retraining and transfer). Reference architectures
  are drawn one per equal-width MACs stratum of their window: the window's midpoint is their mean.
- Detection transfer: the analytic counters know the classification input only, so the backbone's
  MACs are scaled by the detection image's pixels over the training image's; the pyramid and the
  detector heads, and global attention's quadratic growth with the tokens, are not counted: a
  lower bound.
- Data read: images x bytes per image (`IMAGE_BYTES`), every training image of every step, and
  the held-out (or test) images once per job, as the stages decode them once.
Rules without training or evaluation (the reference merge, figures, families, published: it
times a few published networks, seconds) are left out; the job list is `jobs`, the one place that
mirrors workflow/rules/*.smk.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import pandas as pd

from . import config as configuration
from . import families
from .ablation import search_config, variant_config
from .errors import ConfigError
from .results import transferred
from .search import n_evaluations
from .spaces import parse_macs, sampler, window
from .variants import selected_variants

FLOPS_PER_MAC = 2
TRAIN_PASSES = 3  # forward + backward (about twice the forward)
# Dense bf16 peaks without sparsity, per NVIDIA's data sheets (A100 SXM/PCIe 312; H100 SXM 989,
# the PCIe card 756; H200 SXM 989), FLOP/s.
GPU_PEAKS = {"a100": 312e12, "h100": 989e12, "h200": 989e12}
DEFAULT_GPU = "h100"
# Model FLOPs utilisation: a typical share of the peak for ViT training in bf16; not calibrated
# (no GPU measurement in this project yet: benchmarks/README.md, "Planned vs measured").
DEFAULT_MFU = 0.4
SAMPLES = 1000  # seeded sub-network draws per supernet for its mean MACs

# Whole data sets when the data is not on this machine: (train, test, classes). ImageNet-1k's
# ILSVRC2012 train and val; a class subset (`data.classes`) takes its share of both.
NOMINAL_SIZES = {"fashion_mnist": (60_000, 10_000, 10), "cifar10": (50_000, 10_000, 10),
                 "imagenet": (1_281_167, 50_000, 1000)}
# Bytes read per image: Fashion-MNIST and CIFAR-10 as uint8 arrays in memory (28 x 28, 32 x 32 x 3);
# ImageNet's mean JPEG, from the train archive (ILSVRC2012_img_train.tar, 147.9 GB / 1,281,167).
IMAGE_BYTES = {"fashion_mnist": 784, "cifar10": 3072, "imagenet": 115_000}
# COCO 2017: train2017 (118,287 images, about 18 GiB of JPEG: 160 KB each) and val2017 (5,000).
COCO_IMAGES = {"train": 118_287, "val": 5_000}
COCO_IMAGE_BYTES = 160_000
COCO_ASPECT = 4 / 3  # most COCO images are 640 x 480: the longer side after resizing, capped by max_size
ONNX_CHECK_IMAGES = 2 + 3  # onnxruntime's check of model.onnx: a batch of 2 and one of 3, torch and ORT


def measured_images(cfg: dict) -> int:
    """Images retraining runs through its model after the test split: the ONNX check, then the
    latency measurement (warm-up + repeats calls at batch 1 and at the throughput batch), each in
    torch and onnxruntime (vitnas.retrain.measure_model)."""
    lat = cfg["latency"]
    calls = lat["warmup"] + lat["repeats"]
    batches = sorted({1, cfg["retrain"]["throughput_batch"]})
    return 2 * (ONNX_CHECK_IMAGES + calls * sum(batches))

# Rules in workflow order, as the tables list them.
RULES = ("prepare_data", "compose_detection", "reference_seed", "train_supernet", "ranking", "search",
         "random_search", "latency_vs_macs", "design_baseline", "retrain", "export", "transfer", "ablation_supernet",
         "ablation_ranking", "ablation_search")


@dataclass(frozen=True)
class Job:
    """One planned job: its rule, space (None: experiment-wide), chain seed (None: not per seed)
    and wildcard (the budget, supernet, model, arm or reference seed that names it), and its cost."""

    rule: str
    space: str | None = None
    seed: int | None = None
    wildcard: str = ""
    train_flops: float = 0.0
    eval_flops: float = 0.0
    read_bytes: float = 0.0


# ------------------------------------------------------------------------------ devices
def device_rate(gpu: str | None = None, mfu: float | None = None, cpu_gflops: float | None = None) -> tuple[float, str]:
    """(achieved FLOP/s, a label) of the device planned for: a GPU's peak (a name of GPU_PEAKS or a
    number of TFLOP/s) x `mfu`, or a CPU's measured throughput in GFLOP/s (already achieved: no MFU)."""
    if cpu_gflops is not None:
        if cpu_gflops <= 0:
            raise ConfigError(f"--cpu-gflops {cpu_gflops} must be positive; give the CPU's measured GFLOP/s")
        return cpu_gflops * 1e9, f"CPU at {cpu_gflops:g} GFLOP/s (measured, no MFU)"
    name = (gpu or DEFAULT_GPU).lower()
    if name in GPU_PEAKS:
        peak = GPU_PEAKS[name]
    else:
        try:
            peak = float(name) * 1e12
        except ValueError:
            peak = -1.0
        if not peak > 0:
            raise ConfigError(f"--gpu {gpu!r} is not known; use {', '.join(GPU_PEAKS)} or a peak in TFLOP/s "
                              "such as 500")
        name = "a GPU"
    mfu = DEFAULT_MFU if mfu is None else mfu
    if not 0 < mfu <= 1:
        raise ConfigError(f"--mfu {mfu} is out of range; give a share of the peak in (0, 1], e.g. 0.4")
    return peak * mfu, f"{name} ({peak / 1e12:g} TFLOP/s dense bf16) at MFU {mfu:g}"


# ------------------------------------------------------------------------------ the job list
def jobs(cfg: dict, replicates: bool = False) -> list[Job]:
    """The jobs the workflow plans for `cfg` (costs still zero): the default target `all`, or with
    `replicates` also `snakemake replicates` (the chain for every replicate seed, and the ablation
    whether or not `ablation.enabled`). Mirrors workflow/rules/*.smk."""
    names = configuration.active_spaces(cfg)
    scfgs = {n: configuration.for_space(cfg, n) for n in names}
    seeds = [cfg["seed"] + k for k in range(cfg["replicates"] if replicates else 1)]
    out = [Job("prepare_data")]
    if any(s["transfer"]["dataset"] == "composed" for s in scfgs.values()):
        out.append(Job("compose_detection"))
    for name, scfg in scfgs.items():
        budgets = scfg["search"]["budgets"]
        supernets = budgets if scfg["supernet"]["per_budget"] else ["shared"]
        models = configuration.model_names(scfg, replicates)
        out += [Job("reference_seed", name, None, str(cfg["seed"] + k)) for k in range(cfg["reference"]["seeds"])]
        for seed in seeds:
            out += [Job("train_supernet", name, seed, sn) for sn in supernets]
            out += [Job("ranking", name, seed, sn) for sn in supernets]
            out += [Job(rule, name, seed, b) for rule in ("search", "random_search") for b in budgets]
            out += [Job("latency_vs_macs", name, seed, b) for b in scfg["search"]["latency_vs_macs"]]
            out += [Job("retrain", name, seed, m) for m in models]
            out += [Job("transfer", name, seed, m) for m in transferred(models)]
            out += [Job("export", name, seed, b) for b in budgets]
        out += [Job("design_baseline", name, None, b) for b in budgets]
        if replicates or cfg["ablation"]["enabled"]:
            arms = selected_variants(scfg)
            out += [Job(rule, name, None, arm) for rule in ("ablation_supernet", "ablation_ranking",
                                                            "ablation_search") for arm in arms]
    return out


# ------------------------------------------------------------------------------ per space
class SpacePlan:
    """What one space's jobs cost: its config, space, split sizes and the MACs they need."""

    def __init__(self, scfg: dict, sizes: dict, samples: int = SAMPLES):
        self.cfg, self.sizes, self.samples = scfg, sizes, samples
        self.space = families.build_space(scfg)
        self.image_bytes = IMAGE_BYTES[scfg["data"]["dataset"]]
        self._means: dict[str, float] = {}  # supernet -> mean sampled MACs (every seed and rule asks)

    def space_of(self, cfg: dict):
        """The space `cfg` trains (an ablation arm may change the space section)."""
        return self.space if cfg["space"] == self.cfg["space"] else families.build_space(cfg)

    # images
    def train_images(self, section: dict) -> int:
        """Images through training steps of a `supernet`- or `retrain`-like section."""
        return self.steps(section) * section["batch_size"]

    def steps(self, section: dict) -> int:
        per_epoch = self.sizes["train"] // section["batch_size"]
        return section["max_steps"] or max(1, math.ceil(section["epochs"] * per_epoch))

    def held_out(self, n: int | None) -> int:
        """Images of the held-out split a job scores on (`n` of them, all when None)."""
        return min(n or self.sizes["search"], self.sizes["search"])

    # MACs
    def supernet_macs(self, cfg: dict, budget: str | None) -> float:
        """Mean MACs per training image of the supernet of `budget` (None: shared) under `cfg`."""
        sn = cfg["supernet"]
        steps = self.steps(sn)
        per_epoch = max(1, self.sizes["train"] // sn["batch_size"])
        space = self.space_of(cfg)
        draw = sampler(cfg, space, budget)
        rng, total, count = random.Random(f"{cfg['seed']}-plan"), 0.0, 0
        for i in range(self.samples):  # evenly over the run, so that unlocking's epochs count
            d = draw
            if sn["warmup_epochs"]:
                epoch = (i + 0.5) / self.samples * steps / per_epoch
                d = replace(draw, space=space.unlocked(math.floor(epoch) if sn["unlock_per_epoch"] else epoch,
                                                       sn["warmup_epochs"]))
            k = sn["archs_per_batch"]
            archs = [d(rng)] if k == 1 else d.many([random.Random(rng.getrandbits(64)) for _ in range(k)])
            total += sum(space.macs(a) for a in archs)
            count += len(archs)
        return total / count * self.paths(cfg)

    @staticmethod
    def paths(cfg: dict) -> int:
        """Forward paths per sub-network: bilateral sharing runs the first c and the last c channels."""
        return 2 if cfg["supernet"]["sharing"] == "bilateral" else 1

    def health_macs(self, cfg: dict, randoms: int, mean: float) -> float:
        """MACs of one held-out image through the health check: the smallest and the largest
        sub-network, and `randoms` drawn ones of `mean` MACs."""
        space = self.space_of(cfg)
        return (space.macs(space.smallest()) + space.macs(space.largest())) * self.paths(cfg) + randoms * mean

    def reference_macs(self) -> float:
        """Summed MACs of the reference architectures: `archs_per_budget` per window, at its midpoint."""
        n = self.cfg["reference"]["archs_per_budget"]
        total = 0.0
        for budget in self.cfg["search"]["budgets"]:
            lo, hi = window(self.cfg, budget)
            total += n * ((lo or self.space.macs_range()[0]) + hi) / 2
        return total

    def n_reference(self) -> int:
        return self.cfg["reference"]["archs_per_budget"] * len(self.cfg["search"]["budgets"])

    def model_macs(self, model: str) -> float:
        """An evolved model's budget (the upper bound; fine-tuned or not), or its hand-designed
        baseline's MACs."""
        kind, budget = model.split("-", 1)
        if kind in ("evo", "ft"):
            return parse_macs(budget)
        return self.space.macs(families.design_baseline(self.cfg, self.space, budget))

    def supernet_mean(self, supernet: str) -> float:
        if supernet not in self._means:
            self._means[supernet] = self.supernet_macs(self.cfg, None if supernet == "shared" else supernet)
        return self._means[supernet]


# ------------------------------------------------------------------------------ costs per rule
def _train_eval(p: SpacePlan, job: Job, train_images: float, train_macs: float, eval_images: float,
                eval_macs: float, read_images: float) -> Job:
    return replace(job, train_flops=FLOPS_PER_MAC * TRAIN_PASSES * train_images * train_macs,
                   eval_flops=FLOPS_PER_MAC * eval_images * eval_macs, read_bytes=read_images * p.image_bytes)


def _train_supernet(p: SpacePlan, job: Job) -> Job:
    sn = p.cfg["supernet"]
    mean = p.supernet_mean(job.wildcard)
    held = p.held_out(sn["eval_images"])
    images = p.train_images(sn)
    return _train_eval(p, job, images, mean, held, p.health_macs(p.cfg, sn["health_random"], mean),
                       images + held)


def _ranking(p: SpacePlan, job: Job) -> Job:
    held = p.held_out(p.cfg["search"]["eval_images"])
    return _train_eval(p, job, 0, 0, held, p.reference_macs() * p.paths(p.cfg), held)


def _search(p: SpacePlan, job: Job) -> Job:
    held = p.held_out(p.cfg["search"]["eval_images"])
    evaluations = n_evaluations(p.cfg["search"])
    return _train_eval(p, job, 0, 0, held, evaluations * parse_macs(job.wildcard) * p.paths(p.cfg), held)


def _reference_seed(p: SpacePlan, job: Job) -> Job:
    ref, rt = p.cfg["reference"], p.cfg["retrain"]
    images = ref["steps"] * rt["batch_size"]  # per architecture
    held = p.held_out(ref["eval_images"])
    return _train_eval(p, job, images, p.reference_macs(), held, p.reference_macs(),
                       images * p.n_reference() + held)


def _retrain(p: SpacePlan, job: Job) -> Job:
    """Training from scratch, or a fine-tune (ft, and evo with retrain.init: inherited) with `finetune`'s length."""
    init = "inherited" if configuration.fine_tuned(p.cfg, job.wildcard) else "scratch"
    rt = configuration.retrain_recipe(p.cfg["retrain"], init)
    macs, images, test = p.model_macs(job.wildcard), p.train_images(rt), p.sizes["test"]
    return _train_eval(p, job, images, macs, test + measured_images(p.cfg), macs,
                       images + test)


def _export(p: SpacePlan, job: Job) -> Job:
    """The searched network with inherited weights, untrained: measured as retraining measures it."""
    macs, test = p.model_macs(f"evo-{job.wildcard}"), p.sizes["test"]
    return _train_eval(p, job, 0, 0, test + measured_images(p.cfg), macs, test)


def _detection(tr: dict, in_chans: int) -> dict:
    """The detection set: training and validation images, pixels per image, bytes per image."""
    if tr["dataset"] == "coco":
        side = tr["min_size"] or 800
        long = min(side * COCO_ASPECT, tr["max_size"] or side * COCO_ASPECT)
        return {"train": COCO_IMAGES["train"], "val": COCO_IMAGES["val"], "pixels": side * long,
                "bytes": COCO_IMAGE_BYTES}
    side = tr["min_size"] or tr["canvas"]
    return {"train": tr["train_images"], "val": tr["val_images"], "pixels": side * side,
            "bytes": tr["canvas"] ** 2 * in_chans}


def _transfer(p: SpacePlan, job: Job) -> Job:
    tr = p.cfg["transfer"]
    det = _detection(tr, p.space.in_chans)
    per_epoch = max(1, det["train"] // tr["batch_size"])  # as the detection stream counts them
    steps = tr["steps"] if tr["epochs"] is None else max(1, math.ceil(tr["epochs"] * per_epoch))
    images = steps * tr["batch_size"]
    macs = p.model_macs(job.wildcard) * det["pixels"] / p.space.img_size ** 2
    return replace(_train_eval(p, job, images, macs, det["val"], macs, 0),
                   read_bytes=(images + det["val"]) * det["bytes"])


def _ablation_supernet(p: SpacePlan, job: Job) -> Job:
    vcfg = variant_config(p.cfg, job.wildcard)
    budget = min(p.cfg["search"]["budgets"], key=parse_macs)
    mean = p.supernet_macs(vcfg, budget)
    ab = p.cfg["ablation"]
    held = p.held_out(ab["eval_images"])
    # The health check's random networks: layer-wise at p = 0.5 for every arm (vitnas.ablation).
    space = p.space_of(vcfg)
    common, rng = replace(space, sampling="layerwise"), random.Random(f"{p.cfg['seed']}-plan-health")
    random_mean = sum(space.macs(common.sample(rng, 0.5)) for _ in range(p.samples)) / p.samples
    images = p.train_images(vcfg["supernet"])
    return _train_eval(p, job, images, mean, held,
                       p.health_macs(vcfg, ab["random_subnets"], random_mean * p.paths(vcfg)), images + held)


def _ablation_ranking(p: SpacePlan, job: Job) -> Job:
    vcfg = variant_config(p.cfg, job.wildcard)
    held = p.held_out(p.cfg["ablation"]["eval_images"])
    return _train_eval(p, job, 0, 0, held, p.reference_macs() * p.paths(vcfg), held)


def _ablation_search(p: SpacePlan, job: Job) -> Job:
    vcfg = variant_config(p.cfg, job.wildcard)
    held = p.held_out(p.cfg["ablation"]["eval_images"])
    budget = min(parse_macs(b) for b in p.cfg["search"]["budgets"])
    return _train_eval(p, job, 0, 0, held, n_evaluations(search_config(p.cfg)) * budget * p.paths(vcfg), held)


# latency_vs_macs: a search at the MACs pick's latency, costed at its MACs budget.
SPACE_COSTS = {"reference_seed": _reference_seed, "train_supernet": _train_supernet, "ranking": _ranking,
               "search": _search, "random_search": _search, "latency_vs_macs": _search,
               "design_baseline": lambda p, job: job, "retrain": _retrain, "export": _export, "transfer": _transfer,
               "ablation_supernet": _ablation_supernet, "ablation_ranking": _ablation_ranking,
               "ablation_search": _ablation_search}


# ------------------------------------------------------------------------------ the plan
def split_sizes(cfg: dict, data_dir=None) -> tuple[dict, str]:
    """Images per split (train, search, test) and where the numbers come from: the prepared split
    or the raw data when here, else the data set's nominal sizes."""
    from .data import class_subset, split_sizes as measured

    sizes = measured(cfg, data_dir)
    if sizes is not None:
        return sizes, "the data on this machine"
    data = cfg["data"]
    train, test, classes = NOMINAL_SIZES[data["dataset"]]
    subset = class_subset(data)
    if subset:
        train, test = round(train * len(subset) / classes), round(test * len(subset) / classes)
        classes = len(subset)
    search = classes * data["search_per_class"]
    rest = train - search
    return ({"train": min(rest, data["train_limit"] or rest), "search": search,
             "test": min(test, data["test_limit"] or test)}, f"the nominal sizes of {data['dataset']}")


def plan(cfg: dict, replicates: bool = False, data_dir=None, samples: int = SAMPLES) -> tuple[list[Job], dict]:
    """Every planned job with its cost, and the split sizes used ({"sizes", "source"})."""
    sizes, source = split_sizes(cfg, data_dir)
    plans: dict[str, SpacePlan] = {}
    out = []
    for job in jobs(cfg, replicates):
        if job.rule == "prepare_data":  # the raw sets read once (ImageNet: a listing of the files)
            raw = 0 if cfg["data"]["dataset"] == "imagenet" else sum(sizes.values())
            out.append(replace(job, read_bytes=raw * IMAGE_BYTES[cfg["data"]["dataset"]]))
        elif job.rule == "compose_detection":  # objects from the train and test splits onto canvases
            tr = cfg["transfer"]
            objects = (tr["train_images"] + tr["val_images"]) * sum(tr["objects"]) / 2
            out.append(replace(job, read_bytes=objects * IMAGE_BYTES[cfg["data"]["dataset"]]))
        else:
            if job.space not in plans:
                plans[job.space] = SpacePlan(configuration.for_space(cfg, job.space), sizes, samples)
            out.append(SPACE_COSTS[job.rule](plans[job.space], job))
    return out, {"sizes": sizes, "source": source}


def per_rule(planned: list[Job], flops_per_s: float) -> pd.DataFrame:
    """Per rule (workflow order): jobs, train and eval PFLOPs, device hours, data read (GB); and a
    total row."""
    df = pd.DataFrame([vars(j) for j in planned])
    rows = []
    for rule in [r for r in RULES if r in set(df["rule"])]:
        sub = df[df["rule"] == rule]
        rows.append({"rule": rule, "jobs": len(sub), "train_pflops": sub["train_flops"].sum() / 1e15,
                     "eval_pflops": sub["eval_flops"].sum() / 1e15,
                     "hours": (sub["train_flops"].sum() + sub["eval_flops"].sum()) / flops_per_s / 3600,
                     "read_gb": sub["read_bytes"].sum() / 1e9})
    table = pd.DataFrame(rows)
    total = {"rule": "total", "jobs": int(table["jobs"].sum())} | {
        k: table[k].sum() for k in ("train_pflops", "eval_pflops", "hours", "read_gb")}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


NOTES = ("FLOPs = 2 x MACs (analytic, timm convention); a training image 3 x its forward, an evaluated one 1 x",
         "supernet steps: the mean MACs of its sampler's draws; a searched network: its budget (upper bound)",
         "transfer: backbone only, MACs scaled by the detection pixels (a lower bound: no pyramid, no heads)")


def _num(value: float) -> str:
    """A table cell: whole numbers with thousands separators from 100 on, 3 significant digits below."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def format_plan(table: pd.DataFrame, experiment: str, device: str, sizes: dict, hours: str = "GPU-hours") -> str:
    """The per-rule table as Markdown, under a line naming the experiment, device and split sizes."""
    shown = pd.DataFrame({"rule": table["rule"], "jobs": table["jobs"].astype(str)} | {
        name: [_num(v) for v in table[key]] for name, key in (
            ("train PFLOPs", "train_pflops"), ("eval PFLOPs", "eval_pflops"), (hours, "hours"),
            ("data read (GB)", "read_gb"))})
    head = (f"plan of experiment {experiment} on {device}; images per split: "
            + ", ".join(f"{k} {v:,}" for k, v in sizes["sizes"].items()) + f" ({sizes['source']})")
    body = shown.to_markdown(index=False, disable_numparse=True, colalign=("left",) + ("right",) * 5)
    return "\n".join([head, "", body, ""] + [f"- {n}" for n in NOTES])
