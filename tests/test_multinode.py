"""Data parallelism over nodes on the local SLURM (tools/slurm-cluster.sh): a 2-task job in which
each task plays one node ends with the weights of one process, survives scancel and a retry, and
its checkpoint resumes in one process.

What runs: the sbatch job takes the command workflow/scripts/launch.sh builds for `gpu: 0, nodes: 2`
(srun ... torchrun --nnodes=2 --nproc_per_node=1 --rdzv_backend=c10d --rdzv_endpoint=<first node>:
<port from the job id> --rdzv_id=<job id>) and runs it with two changes: the test cluster has one
slurmd, so `--nodes=2 --ntasks-per-node=1` go and srun runs its 2 tasks on the one node (two
torchrun agents, gloo on the CPU, meeting at the c10d store on the node's name, 127.0.0.1 here);
and tests/multinode_job.py (float64) stands in for `-m vitnas.cli`.

Tolerance: as in tests/test_distributed.py (its docstring derives it): in float64 two ranks that sum
the gradient in another order than one process differ by < 1e-16 x 16 images x 1e5 (AdamW's 1/eps
on a zero-gradient weight) x lr 1e-3 x 12 steps ~ 2e-11 per weight, so 1e-9 holds with a margin of
50x, while a dropped or doubled rank moves weights by ~1e-4 (test_distributed's faulty runs).
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import BIN, REPO, slurm_sh as sh
from vitnas import config
from vitnas.families import build_space
from vitnas.families.vit.supernet import ViTSupernet

pytestmark = pytest.mark.slow  # a real cluster: never in the fast tier

LAUNCH = REPO / "workflow/scripts/launch.sh"
HELPER = REPO / "tests/multinode_job.py"
STEPS = 12
TOLERANCE = 1e-9  # float64: see the module docstring

JOB = """#!/bin/bash
set -euo pipefail
mapfile -t cmd < <(VITNAS_LAUNCH_DRY_RUN=1 bash {launch} 0 2 "$@")
[ "${{cmd[0]:-}}" = srun ] || {{ echo "launch.sh gave no srun line: ${{cmd[*]:-}}" >&2; exit 3; }}
run=()  # one slurmd: drop the per-node placement; the helper stands in for vitnas.cli
for ((i = 0; i < ${{#cmd[@]}}; i++)); do
    case ${{cmd[$i]}} in
        --nodes=*|--ntasks-per-node=*) ;;
        -m) run+=({helper}); i=$((i + 1)) ;;
        *) run+=("${{cmd[$i]}}") ;;
    esac
done
echo "LAUNCH: ${{run[*]}}"
"${{run[@]}}"
"""


def env() -> dict:
    src = str(REPO / "src")
    return dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}",
                PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))


def one_process_run(ckpt: Path, out: Path) -> str:
    r = subprocess.run([sys.executable, str(HELPER), str(ckpt), str(out), "--steps", str(STEPS)],
                       capture_output=True, text=True, timeout=300, env={
                           k: v for k, v in env().items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")})
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stderr


@pytest.fixture
def jobs(slurm_cluster):
    """The job ids a test submits: whatever it leaves queued is cancelled (a pending job left over
    once held the next tests' CPUs). The node must fit the 2-task job at all."""
    cpus = sh(["sinfo", "-h", "-N", "-o", "%c"]).stdout.split()
    if not cpus or int(cpus[0]) < 2:
        pytest.skip(f"the test cluster's node has {cpus} CPUs; the 2-task job needs 2 "
                    "(tools/slurm-cluster.sh takes them from `slurmd -C`)")
    submitted: list[str] = []
    yield submitted
    for job in submitted:
        sh(["scancel", job])


def submit(jobs: list[str], tmp_path: Path, ckpt: Path, out: Path, name: str,
           pause: float = 0.0) -> tuple[str, Path]:
    script = tmp_path / "job.sh"
    script.write_text(JOB.format(launch=LAUNCH, helper=HELPER))
    log = tmp_path / f"{name}.out"
    r = subprocess.run(["sbatch", "--parsable", "--ntasks=2", "--cpus-per-task=1", "--mem=3000", "-t", "10",
                        "-J", f"vitnas-multinode-{name}", "-o", str(log), "-D", str(tmp_path), str(script),
                        str(ckpt), str(out), "--steps", str(STEPS), "--pause", str(pause)],
                       capture_output=True, text=True, timeout=60, env=env())
    assert r.returncode == 0, r.stderr
    jobs.append(r.stdout.strip().split(";")[0])
    return jobs[-1], log


def why(job: str, log: Path) -> str:
    """What SLURM says of `job` (state, pending reason) and the tail of its log, for a failure."""
    queued = sh(["squeue", "-h", "-j", job, "-o", "%T %r"]).stdout.strip() or "not queued"
    node = sh(["sinfo", "-h", "-N", "-o", "%N %T %c CPUs %m MB"]).stdout.strip()
    text = log.read_text()[-3000:] if log.is_file() else "(no log: the job never started)"
    return f"job {job}: {queued}; node: {node}\n{text}"


def wait_gone(job: str, log: Path, limit: float) -> None:
    """Until squeue no longer lists `job`; fails after `limit` seconds, saying why it is queued."""
    end = time.monotonic() + limit
    while sh(["squeue", "-h", "-j", job, "-o", "%i"]).stdout.strip():
        if time.monotonic() > end:
            pytest.fail(f"still queued or running after {limit} s: {why(job, log)}")
        time.sleep(1)


def state(job: str) -> str:
    for _ in range(20):  # slurmctld hands records to slurmdbd asynchronously
        s = sh(["sacct", "-X", "-n", "-P", "-j", job, "-o", "State"]).stdout.strip()
        if s and s not in ("RUNNING", "PENDING"):
            return s
        time.sleep(0.5)
    return s


def worst_difference(a: dict, b: dict) -> tuple[float, str]:
    return max((float((a[k] - b[k]).abs().max()), k) for k in a)


def assert_same_weights(result: dict, reference: dict) -> None:
    worst, where = worst_difference(result["state"], reference["state"])
    assert worst < TOLERANCE, f"{where} differs by {worst:.3g}"
    assert [r["step"] for r in result["log"]] == [r["step"] for r in reference["log"]]
    for a, b in zip(result["log"], reference["log"]):  # the logged loss: the mean over the global batch
        assert a["loss"] == pytest.approx(b["loss"], rel=TOLERANCE)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    d = tmp_path_factory.mktemp("one")
    one_process_run(d / "ckpt", d / "one.pt")
    out = torch.load(d / "one.pt")
    assert out["world"] == 1 and out["log"][-1]["step"] == STEPS
    return out


def test_two_node_job_equals_one_process(jobs, tmp_path, one_process):
    t0 = time.monotonic()
    job, log = submit(jobs, tmp_path, tmp_path / "ckpt", tmp_path / "two.pt", "two")
    wait_gone(job, log, 240)
    print(f"\n2-task job {job}: {time.monotonic() - t0:.1f} s from sbatch to gone")
    text = log.read_text()
    assert state(job) == "COMPLETED", text[-3000:]
    launched = re.search(r"^LAUNCH: (.*)$", text, re.M)[1].split()
    port = 10000 + int(job) % 20000
    assert launched[:5] == ["srun", "--ntasks=2", "--cpus-per-task=1", "--mem=0", "--kill-on-bad-exit=1"], launched
    assert launched[5:11] == ["torchrun", "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
                              f"--rdzv_endpoint={sh(['hostname', '-s']).stdout.strip()}:{port}",
                              f"--rdzv_id={job}"], launched
    two = torch.load(tmp_path / "two.pt")
    assert two["world"] == 2  # two ranks really trained, one per "node"
    assert_same_weights(two, one_process)
    torch.manual_seed(0)  # it did train: the weights moved from their initial values (as the helper builds them)
    initial = ViTSupernet(build_space(config.validate({}))).double().state_dict()
    assert worst_difference(two["state"], initial)[0] > 1e3 * TOLERANCE
    last = torch.load(tmp_path / "ckpt/last.pt", weights_only=True)
    assert last["step"] == STEPS and last["world"] == 2


def test_cancelled_two_node_job_retries_and_resumes_in_one_process(jobs, tmp_path, one_process):
    """scancel the 2-task job once it has checkpointed; (b) the same job submitted again resumes
    and ends with one process's weights; (c) its checkpoint, copied before the retry, resumes in a
    single process (1 node, 1 process) to the same weights."""
    ckpt = tmp_path / "ckpt"
    job, log = submit(jobs, tmp_path, ckpt, tmp_path / "two.pt", "cut", pause=1.5)  # ~1.5 s a step
    end = time.monotonic() + 180
    while not (ckpt / "last.pt").is_file():
        assert time.monotonic() < end, f"no checkpoint after 180 s: {why(job, log)}"
        assert sh(["squeue", "-h", "-j", job, "-o", "%i"]).stdout.strip(), \
            f"ended before a checkpoint: {why(job, log)}"
        time.sleep(0.5)
    assert sh(["scancel", job]).returncode == 0
    wait_gone(job, log, 120)
    assert state(job).startswith("CANCELLED"), log.read_text()[-3000:]
    cut = torch.load(ckpt / "last.pt", weights_only=True)
    assert cut["world"] == 2 and 0 < cut["step"] < STEPS, cut["step"]
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(ckpt / "last.pt", single / "last.pt")

    retry, retry_log = submit(jobs, tmp_path, ckpt, tmp_path / "two.pt", "retry")
    wait_gone(retry, retry_log, 240)
    text = retry_log.read_text()
    assert state(retry) == "COMPLETED", text[-3000:]
    resumed = re.search(r"resumed from step (\d+) of (\d+)", text)
    assert resumed and int(resumed[1]) == cut["step"] and int(resumed[2]) == STEPS, text[-3000:]
    assert_same_weights(torch.load(tmp_path / "two.pt"), one_process)

    err = one_process_run(single, tmp_path / "single.pt")
    assert f"resumed from step {cut['step']} of {STEPS}" in err, err[-2000:]
    single_out = torch.load(tmp_path / "single.pt")
    assert single_out["world"] == 1
    assert_same_weights(single_out, one_process)
