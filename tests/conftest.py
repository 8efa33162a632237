import gzip
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

# One intra-op thread: tests are small, and the workflow tests' jobs run beside them on 2 cores.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (the Fashion-MNIST format)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory) -> Path:
    """A small Fashion-MNIST look-alike: 10 classes, class-dependent bright squares."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 200)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c:2 * c + 8, 4:24] = 220
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def run(cmd, cwd=REPO, timeout=300, **kw) -> subprocess.CompletedProcess:
    """Run a command with the venv first on PATH and a hard timeout."""
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def workflow_copy(dest: Path) -> Path:
    """The workflow files (not results) in a fresh folder, to run Snakemake there."""
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    shutil.copytree(REPO / "workflow", dest / "workflow", symlinks=False)
    shutil.copytree(REPO / "config", dest / "config")
    return dest


needs_fmnist = pytest.mark.skipif(
    not (FMNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist; `make test` does it as root)")


def traced_macs(model, x) -> int:
    """MACs as torch.utils.flop_counter measures them (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def perturbed_supernet(sharing: str = "prefix", private_qk: bool = False, shifting: bool = True,
                       drop_path: float = 0.0, private_tokens: bool = True):
    """A default-space supernet in eval mode whose norms and biases are non-trivial, so that a
    slicing error cannot hide behind ones and zeros."""
    from vitnas import config
    from vitnas.families import build_space
    from vitnas.families.vit.supernet import ViTSupernet
    cfg = config.validate({"supernet": {"sharing": sharing, "private_qk": private_qk,
                                        "identity_shifting": shifting}, "space": {"min_depth": 1}})
    torch.manual_seed(0)
    net = ViTSupernet(build_space(cfg), sharing, private_qk, drop_path, private_tokens)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return net.eval()


def perturb_(net):
    """`net` with its vectors (biases, norms' affine parameters) and BatchNorm statistics moved
    off their initial ones and zeros, so that a slicing error cannot hide behind them."""
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim <= 1:
                p.add_(0.1 * torch.randn_like(p))
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(1 + 0.5 * torch.rand_like(b))
    return net


# The real CIFAR-10 (JPEG files) is not part of the repository: `.ci/run` points VITNAS_DATA at the
# folder holding cifar10-jpeg.tar.gz; without it the tests that need it skip, saying how to get it.
DATA_ENV = "VITNAS_DATA"
CIFAR_ARCHIVE = "cifar10-jpeg.tar.gz"
CIFAR_SKIP = (f"CIFAR-10 not available: set {DATA_ENV}=/path/to/folder with {CIFAR_ARCHIVE} (.ci/run does when "
              "../shared/data is beside the checkout), or download it with torchvision's "
              "CIFAR10(root, download=True) and run the pipeline with data.dataset: cifar10, data.root: root")


def cifar10_archive() -> Path:
    """The CIFAR-10 JPEG archive VITNAS_DATA points at; the calling test skips without it."""
    folder = os.environ.get(DATA_ENV)
    if not folder or not (Path(folder) / CIFAR_ARCHIVE).is_file():
        pytest.skip(CIFAR_SKIP)
    return Path(folder) / CIFAR_ARCHIVE


@pytest.fixture(scope="session")
def cifar10_jpeg(tmp_path_factory) -> Path:
    """The archive's first 20 training and 10 test images per class, unpacked (a second, not the
    whole archive's ~6): the `cifar10/` folder, a data.root."""
    import tarfile

    archive = cifar10_archive()
    out = tmp_path_factory.mktemp("cifar10-jpeg")
    keep = {"train": 20, "test": 10}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts  # cifar10/<split>/<class>/NNNN.jpg
            if member.isfile() and len(parts) == 4 and int(Path(parts[3]).stem) < keep.get(parts[1], 0):
                tar.extract(member, out, filter="data")
    return out / "cifar10"


def slurm_sh(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """A SLURM command with the venv's tools on PATH."""
    kw.setdefault("env", dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """Start (or find running) the single-node cluster (tools/slurm-cluster.sh); returns its default
    partition. A cluster this fixture started is stopped again at the end of the session."""
    if os.geteuid() != 0:
        pytest.skip("SLURM tests need root to start the test cluster (sudo tools/slurm-cluster.sh start)")
    if shutil.which("apt-get") is None:
        pytest.skip("SLURM tests need apt-get (Debian/Ubuntu) to install the test cluster")
    script = str(REPO / "tools/slurm-cluster.sh")
    was_running = slurm_sh(["bash", script, "status"]).returncode == 0
    t0 = time.monotonic()
    r = slurm_sh(["bash", script, "start"], timeout=900, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.fail(f"tools/slurm-cluster.sh start failed:\n{r.stdout}\n{r.stderr}")
    print(f"\nSLURM test cluster ready in {time.monotonic() - t0:.0f} s")
    r = slurm_sh(["sinfo", "-h", "-o", "%P"])
    default = [p[:-1] for p in r.stdout.split() if p.endswith("*")]
    assert default, f"no default partition: {r.stdout} {r.stderr}"
    yield default[0]
    if not was_running:
        slurm_sh(["bash", script, "stop"], timeout=120)
