"""workflow/scripts/launch.sh: the command a GPU rule runs, for one node and for several.

The script runs with VITNAS_LAUNCH_DRY_RUN=1 (it prints its command, one word per line) and a fake
`scontrol` first on PATH that answers for a 2-node job, so no SLURM is needed here; the real
multi-node run is tests/test_multinode.py."""
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

LAUNCH = REPO / "workflow/scripts/launch.sh"
STAGE = ["train-supernet", "--seed", "0", "--log", "x"]  # --log: a prefix of torchrun's --log-dir

FAKE_SCONTROL = """#!/bin/sh
# scontrol show job -o ID  |  scontrol show hostnames LIST
if [ "$2" = job ]; then
  echo "JobId=$4 JobName=x NumNodes=2 NumCPUs=64 NumTasks=2 CPUs/Task=32 NodeList=gpu[07-08] BatchHost=gpu07"
elif [ "$2" = hostnames ]; then
  [ "$3" = "gpu[07-08]" ] && printf 'gpu07\\ngpu08\\n'
fi
"""


def launch(tmp_path: Path, gpus, nodes, job_id: str | None = "123456") -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", VITNAS_LAUNCH_DRY_RUN="1")
    if job_id is not None:
        env["SLURM_JOB_ID"] = job_id
    return subprocess.run(["bash", str(LAUNCH), str(gpus), str(nodes), *STAGE],
                          capture_output=True, text=True, env=env, timeout=30)


def words(r: subprocess.CompletedProcess) -> list[str]:
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_two_nodes_four_gpus_each(tmp_path):
    """gpu: 8, nodes: 2 -> one torchrun per node with 4 processes, c10d on the first node."""
    assert words(launch(tmp_path, 8, 2)) == [
        "srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=32", "--mem=0",
        "--kill-on-bad-exit=1", "--gpus-per-node=4",
        "torchrun", "--nnodes=2", "--nproc_per_node=4", "--rdzv_backend=c10d",
        # port 10000 + 123456 % 20000 = 13456; the rendezvous id is the job id
        "--rdzv_endpoint=gpu07:13456", "--rdzv_id=123456", "-m", "vitnas.cli", *STAGE]


def test_two_cpu_nodes_run_one_process_each(tmp_path):
    """No GPU (the test cluster): one gloo process per node, no GPU request for the step."""
    out = words(launch(tmp_path, 0, 2, job_id="7"))
    assert "--nproc_per_node=1" in out and "--rdzv_endpoint=gpu07:10007" in out
    assert not any(w.startswith("--gpus") for w in out), out


@pytest.mark.parametrize("gpus, expected", [
    (0, ["vitnas", *STAGE]),
    (1, ["vitnas", *STAGE]),
    (8, ["torchrun", "--standalone", "--nproc_per_node=8", "-m", "vitnas.cli", *STAGE]),
])
def test_one_node_is_unchanged(tmp_path, gpus, expected):
    """One node: plain vitnas, or torchrun --standalone; no SLURM query, inside a job or not."""
    assert words(launch(tmp_path, gpus, 1, job_id=None)) == expected
    assert words(launch(tmp_path, gpus, 1)) == expected


@pytest.mark.parametrize("gpus, nodes, job_id, message", [
    (8, 2, None, "nodes: 2 needs a SLURM job"),
    (6, 4, "1", "gpu: 6 GPUs do not split evenly over nodes: 4; make gpu a multiple of nodes"),
    (8, 0, "1", "nodes: '0' is not a node count"),
    ("x", 1, "1", "gpu: 'x' is not a GPU count"),
])
def test_bad_layouts_say_what_to_fix(tmp_path, gpus, nodes, job_id, message):
    r = launch(tmp_path, gpus, nodes, job_id)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("launch: " + message), r.stderr
