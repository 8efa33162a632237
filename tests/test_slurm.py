"""On a real SLURM cluster: `snakemake --profile slurm` runs every rule as a SLURM job, gives the same
tables as a local run, and a training job killed with `scancel` is retried and resumes from its
checkpoint. The cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd on this machine) is started by
tools/slurm-cluster.sh; that needs root and apt-get, and the tests say so when they skip.

The real profile (slurm/config.yaml) asks for paper-scale GPUs; this machine has none. The tests run
a copy of it written into the working copy's own slurm/ folder (the profile is found relative to the
current directory) with no GPUs, small memory and short status-check delays.
Every snakemake call runs under `timeout -k`: a Snakemake that never learns its jobs finished (see
SLURM.md) hangs silently and ignores SIGTERM.
"""
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import BIN, REPO, needs_fmnist, slurm_sh, workflow_copy

pytestmark = pytest.mark.slow  # a real cluster: never in the fast tier

SCRIPT = REPO / "tools/slurm-cluster.sh"
PROFILE = REPO / "slurm/config.yaml"
TINY = REPO / "tests/config/tiny.yaml"
GPU_RULES = ("train_supernet", "retrain", "transfer")  # multi-GPU: they start torchrun
STAGES = {"prepare_data", "train_supernet", "search", "random_search", "design_baseline", "retrain",
          "compose_detection", "transfer", "figures"}
# Machine-timing-dependent columns: everything else in the tables must match exactly.
# Measured on the machine, not computed: they differ between any two runs.
TIMING_COLUMNS = {"throughput (img/s)", "latency torch (ms)", "latency ORT (ms)"}


def env() -> dict:
    return dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")


sh = slurm_sh


def start_snakemake(args: list[str], cwd: Path, limit: int, log: Path) -> subprocess.Popen:
    """snakemake in the background, output to `log`, under a hard limit: SIGTERM at `limit` s,
    SIGKILL 10 s later."""
    cmd = ["timeout", "-k", "10", str(limit), str(BIN / "snakemake"), *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    proc.started, proc.limit, proc.log, proc.label = time.monotonic(), limit, log, " ".join(args[:3])
    return proc


def finish_snakemake(proc: subprocess.Popen, hint: str = "") -> tuple[int, str]:
    """Wait for a start_snakemake; on a hang, kill it, cancel the SLURM jobs it left and fail."""
    try:
        rc = proc.wait(timeout=max(1, proc.started + proc.limit + 30 - time.monotonic()))
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        kill(proc)
    out = proc.log.read_text()
    print(f"\nsnakemake {proc.label} ...: exit {rc} after {time.monotonic() - proc.started:.0f} s")
    if rc in (None, 124, 137):
        cancel_jobs(out)
        pytest.fail(f"snakemake {proc.label} ... ran past {proc.limit} s and was killed. {hint}\n"
                    f"{out[-3000:]}")
    return rc, out


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL a start_snakemake's whole process group, if it still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def snakemake(args: list[str], cwd: Path, limit: int, log: Path) -> tuple[int, str]:
    return finish_snakemake(start_snakemake(args, cwd, limit, log))


def slurm_job_ids(output: str) -> list[str]:
    """The SLURM job ids Snakemake reports having submitted."""
    return re.findall(r"submitted with SLURM jobid (\d+)", output)


def cancel_jobs(output: str) -> None:
    ids = slurm_job_ids(output)
    if ids and shutil.which("scancel"):
        sh(["scancel", *ids])


def sacct(job_ids: list[str]) -> pd.DataFrame:
    """Accounting records (allocations only, no steps) of the given jobs."""
    fields = ["JobID", "State", "Comment", "Timelimit", "ExitCode"]
    for _ in range(20):  # slurmctld hands records to slurmdbd asynchronously
        r = sh(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", ",".join(fields)])
        assert r.returncode == 0, r.stderr
        rows = [line.split("|") for line in r.stdout.splitlines() if line.strip()]
        if len(rows) >= len(job_ids) and all(row[2] for row in rows):
            break
        time.sleep(0.5)
    return pd.DataFrame(rows, columns=fields)


def write_test_profile(dest: Path, partition: str) -> Path:
    """slurm/config.yaml, turned into a profile this GPU-less, 2-core machine can run: no GPUs,
    the test cluster's partition, small memory, 2-s status checks, SLURM logs kept."""
    profile = yaml.safe_load(PROFILE.read_text())
    profile.update({
        "slurm-init-seconds-before-status-checks": 2,
        "slurm-keep-successful-logs": True,
        "latency-wait": 5,
        "retries": 0,  # each test says how many it wants
    })
    profile["default-resources"].update(slurm_partition=f"'{partition}'", mem_mb=2000)
    for resources in profile["set-resources"].values():
        for key in ("gpu_model", "gres", "cpus_per_gpu", "slurm_partition", "tasks"):
            resources.pop(key, None)
        if "gpu" in resources:
            resources["gpu"] = 0  # the rule then runs plain `vitnas` on the CPU
        resources["mem_mb"] = 2000
    (dest / "slurm").mkdir()
    (dest / "slurm/config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def slurm_time(minutes: int) -> str:
    """Minutes as sacct prints a time limit: [D-]HH:MM:SS."""
    days, rest = divmod(int(minutes), 1440)
    hhmmss = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{hhmmss}" if days else hhmmss


def read_tables(results: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_csv(p) for p in sorted((results / "tables").glob("*.csv"))}


@needs_fmnist
@pytest.mark.slow
def test_cluster_node_has_the_hardware_cpus_whatever_omp_num_threads_says(slurm_cluster):
    """The node's CPUs come from `slurmd -C`, not from nproc (which honours OMP_NUM_THREADS, as set
    by the engine inside this very pytest process): a 1-CPU node left every 2-task job pending."""
    hardware = re.search(r" CPUs=(\d+)", sh(["slurmd", "-C"]).stdout)[1]
    r = sh(["bash", str(SCRIPT), "start"], timeout=900, stdin=subprocess.DEVNULL,
           env=dict(env(), OMP_NUM_THREADS="1"))  # running and unchanged: a no-op
    assert r.returncode == 0, r.stderr
    assert sh(["sinfo", "-h", "-N", "-o", "%c"]).stdout.split() == [hardware]


def test_tiny_pipeline_on_slurm_matches_local_run(slurm_cluster, tmp_path):
    """The tiny config as SLURM jobs: the tables equal a local run's, and sacct shows one completed
    SLURM job per job Snakemake ran. One budget and no ablation study keep it short (every stage
    still runs: 11 jobs)."""
    override = {"search": {"budgets": ["2M"]}, "spaces": {"resnas": None, "twins": None}}  # one space: SLURM is the point
    if "ablation" in yaml.safe_load(TINY.read_text()):
        override["ablation"] = {"enabled": False}
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(override))
    configs = ["--configfile", str(TINY), str(tmp_path / "short.yaml")]
    on_slurm = write_test_profile(workflow_copy(_mkdir(tmp_path / "slurm_run")), slurm_cluster)
    local = workflow_copy(_mkdir(tmp_path / "local_run"))

    # The local reference run on one core, beside the SLURM run (whose jobs often wait for status
    # checks): the test takes about as long as the SLURM run alone.
    reference = start_snakemake(["--cores", "1", *configs], local, 900, tmp_path / "local.out")
    try:
        rc, out = snakemake(["--profile", "slurm", *configs], on_slurm, 900, tmp_path / "slurm.out")
        assert rc == 0, out[-3000:]
        jobs = sacct(slurm_job_ids(out))
        assert (jobs.State == "COMPLETED").all(), jobs
        ran = Counter(re.sub(r"^rule_|_wildcards_.*$", "", c) for c in jobs.Comment)
        assert ran == Counter(re.findall(r"^rule (\w+):$", out, re.M)), (ran, out[-3000:])
        assert STAGES <= set(ran), ran
        rc, out = finish_snakemake(reference)
        assert rc == 0, out[-3000:]
    finally:
        kill(reference)

    slurm_tables, local_tables = read_tables(on_slurm / "results/tiny/vit"), read_tables(local / "results/tiny/vit")
    assert {"models.csv", "search_vs_random.csv", "detection.csv"} <= set(slurm_tables)
    assert set(local_tables) == set(slurm_tables)
    for name, table in slurm_tables.items():
        timing = [c for c in table.columns if c in TIMING_COLUMNS]
        pd.testing.assert_frame_equal(table.drop(columns=timing),
                                      local_tables[name].drop(columns=timing), check_exact=True)


@needs_fmnist
@pytest.mark.slow
def test_cancelled_training_job_is_retried_and_resumes(slurm_cluster, tmp_path):
    """scancel the supernet job once it has checkpointed: Snakemake resubmits it (--retries 1),
    with the runtime doubled for attempt 2, and training resumes from the checkpoint."""
    work = write_test_profile(workflow_copy(_mkdir(tmp_path / "work")), slurm_cluster)
    (tmp_path / "long.yaml").write_text(
        "supernet: {max_steps: 400, checkpoint_every: 20, batch_size: 8, warmup_steps: 2}\n")
    target = "results/tiny/vit/seed0/supernet/2M/supernet.safetensors"
    args = [target, "--profile", "slurm", "--retries", "1", "--configfile", str(TINY),
            str(tmp_path / "long.yaml")]
    proc = start_snakemake(args, work, 300, tmp_path / "snakemake.out")
    try:
        # Wait for the first checkpoint, then cancel the supernet job while it trains.
        while not list(work.glob("checkpoints/tiny/vit/supernet/*/2M/last.pt")):
            assert proc.poll() is None, f"snakemake ended before a checkpoint:\n{proc.log.read_text()[-3000:]}"
            assert time.monotonic() < proc.started + 200, \
                f"no checkpoint after 200 s:\n{proc.log.read_text()[-3000:]}"
            time.sleep(0.5)
        queue = sh(["squeue", "-h", "-o", "%i|%k"]).stdout.split()
        # The job comment is the rule and its wildcards (seed 0, budget 2M).
        job = [line.split("|")[0] for line in queue if line.split("|")[1].startswith("rule_train_supernet")]
        assert len(job) == 1, queue
        assert sh(["scancel", job[0]]).returncode == 0
    except BaseException:
        kill(proc)
        cancel_jobs(proc.log.read_text())
        raise
    rc, out = finish_snakemake(proc, hint=(
        "With `slurm-status-command: sacct` a cancelled job reads 'CANCELLED by <uid>', which the "
        "SLURM plugin does not recognise, and Snakemake waits for it forever: keep squeue."))
    assert rc == 0, out[-3000:]

    train_log = (work / "results/tiny/vit/logs/seed0/train_supernet_2M.log").read_text()
    resumed = re.search(r"resumed from step (\d+) of (\d+)", train_log)
    assert resumed, train_log[-2000:]
    assert 0 < int(resumed[1]) < int(resumed[2]) == 400, resumed[0]

    jobs = sacct(slurm_job_ids(out))
    supernet = jobs[jobs.Comment.str.startswith("rule_train_supernet")]
    assert len(supernet) == 2 and supernet.JobID.iloc[0] == job[0], jobs
    assert supernet.State.iloc[0].startswith("CANCELLED") and supernet.State.iloc[1] == "COMPLETED", jobs
    # The profile's runtime expression (e.g. "min(1440 * attempt, 2880)" minutes) per attempt
    runtime = yaml.safe_load(PROFILE.read_text())["set-resources"]["train_supernet"]["runtime"]
    expected = [slurm_time(eval(str(runtime), {"attempt": a, "min": min, "max": max})) for a in (1, 2)]
    assert list(supernet.Timelimit) == expected, jobs
    assert expected[1] != expected[0], "the retry should get more time than the first attempt"


@needs_fmnist
def test_real_profile_plans_gpu_rules(tmp_path):
    """`snakemake -n --profile slurm` from the repository root: the paper-scale profile parses,
    plans the whole DAG, and asks for GPUs (and the GPU partition) on the GPU rules only."""
    rc, out = snakemake(["-n", "-F", "--profile", "slurm"], REPO, 120, tmp_path / "dryrun.out")
    assert rc == 0, out[-3000:]
    assert "Using profile slurm" in out
    resources = {}
    for rule, res in re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", out, re.M):
        resources.setdefault(rule, dict(kv.split("=", 1) for kv in res.split(", ")))
    assert set(resources) >= set(GPU_RULES) | {"prepare_data", "search", "figures"}, resources.keys()
    profile = yaml.safe_load(PROFILE.read_text())
    gpu_rules = {rule for rule, res in profile["set-resources"].items() if "gpu" in res}
    assert gpu_rules >= set(GPU_RULES) | {"search", "ablation_supernet"}, gpu_rules
    for rule, res in resources.items():
        if rule in gpu_rules:
            assert int(res["gpu"]) == profile["set-resources"][rule]["gpu"] >= 1, (rule, res)
            assert "tasks" not in res, (rule, res)  # torchrun starts the processes, not srun
            assert res["slurm_partition"] != resources["prepare_data"]["slurm_partition"], (rule, res)
        else:
            assert int(res.get("gpu", 0)) == 0, (rule, res)
        assert int(res["runtime"]) > 0 and int(res["mem_mb"]) > 0, (rule, res)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
