#!/usr/bin/env bash
# Start one stage of the vitnas CLI with one training process per GPU, on one node or on several.
#
#   launch.sh GPUS NODES STAGE [ARGS...]
#
# GPUS: the rule's `gpu` resource, all GPUs of the job (the SLURM plugin asks `sbatch --gpus=GPUS`);
# NODES: its `nodes` resource (`sbatch --nodes=NODES`).
#   NODES 1, GPUS <= 1: vitnas STAGE ARGS                        (one process: today's behaviour)
#   NODES 1, GPUS > 1:  torchrun --standalone --nproc_per_node=GPUS -m vitnas.cli STAGE ARGS
#   NODES > 1 (inside a SLURM job): srun starts one torchrun per node, each with GPUS / NODES
#     processes (one on a CPU-only node: gloo), all meeting through a c10d rendezvous on the job's
#     first node, at a port and with an id taken from the job id (a retry is a new job: new ones).
#
# A shell script, not Python: it only assembles one command and execs it, so the processes SLURM
# signals (scancel, the time-limit warning) are srun and torchrun themselves, with no interpreter
# in between, and the single-node path costs nothing. VITNAS_LAUNCH_DRY_RUN=1 prints the command,
# one word per line, instead of running it (tests/test_launch.py).
set -euo pipefail

die() { echo "launch: $*" >&2; exit 2; }
[ $# -ge 3 ] || die "usage: launch.sh GPUS NODES STAGE [ARGS...]"
gpus=$1 nodes=$2
shift 2
[[ $gpus =~ ^[0-9]+$ ]] || die "gpu: '$gpus' is not a GPU count; set the rule's gpu resource to 0 or more"
[[ $nodes =~ ^[1-9][0-9]*$ ]] || die "nodes: '$nodes' is not a node count; set the rule's nodes resource to 1 or more"

run() {
    if [ -n "${VITNAS_LAUNCH_DRY_RUN:-}" ]; then printf '%s\n' "$@"; else exec "$@"; fi
}

if [ "$nodes" -eq 1 ]; then
    # torchrun parses abbreviated options after the module too (`--log` would match its
    # `--log-dir`): the CLI's flags must not prefix torchrun's.
    if [ "$gpus" -gt 1 ]; then
        run torchrun --standalone --nproc_per_node="$gpus" -m vitnas.cli "$@"
    else
        run vitnas "$@"
    fi
    exit 0
fi

[ -n "${SLURM_JOB_ID:-}" ] || die "nodes: $nodes needs a SLURM job (snakemake --profile slurm); run with nodes: 1 elsewhere"
[ $((gpus % nodes)) -eq 0 ] || die "gpu: $gpus GPUs do not split evenly over nodes: $nodes; make gpu a multiple of nodes"
per_node=$((gpus / nodes))
procs=$((per_node > 1 ? per_node : 1))  # no GPU: one CPU process per node (gloo)

# The Snakemake SLURM plugin clears the job's SLURM_* variables (all but the job id) before it runs
# the rule, so the allocation is read back from the controller.
job=$(scontrol show job -o "$SLURM_JOB_ID") || die "scontrol cannot show job $SLURM_JOB_ID"
field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<"$job"; }
nodelist=$(field NodeList)
cpus=$(field NumCPUs)
[ -n "$nodelist" ] && [ -n "$cpus" ] || die "scontrol show job $SLURM_JOB_ID has no NodeList/NumCPUs"
first=$(scontrol show hostnames "$nodelist" | head -n 1)
# Below Linux's ephemeral ports (32768+), so a port the kernel handed to another connection on the
# first node is not picked; two jobs sharing a first node clash only if their ids differ by 20000k.
port=$((10000 + SLURM_JOB_ID % 20000))

step=(srun --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1
      --cpus-per-task=$((cpus / nodes > 0 ? cpus / nodes : 1))  # the node's CPUs to its torchrun
      --mem=0                                                   # and the job's memory on the node
      --kill-on-bad-exit=1)                                     # one node fails: stop the others
[ "$per_node" -gt 0 ] && step+=(--gpus-per-node="$per_node")
run "${step[@]}" torchrun --nnodes="$nodes" --nproc_per_node="$procs" \
    --rdzv_backend=c10d --rdzv_endpoint="$first:$port" --rdzv_id="$SLURM_JOB_ID" \
    -m vitnas.cli "$@"
