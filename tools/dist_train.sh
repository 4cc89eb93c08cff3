#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NGPUS [train.py args...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
# Without CUDA the runner starts gloo instead of NCCL, so this also runs on CPU.
# On SLURM use slurm/train.sbatch instead (one srun task per GPU; preemption and requeue).
# SIGTERM to torchrun reaches the workers: they finish the step, save a checkpoint and exit
# with 75; run again with --resume to continue.
set -euo pipefail
usage() {
    cat <<'USAGE'
usage: tools/dist_train.sh CONFIG NPROC_PER_NODE [tools/train.py args...]

Starts NPROC_PER_NODE training processes with torchrun (tools/train.py --launcher pytorch), each
on its own shard of the data; without CUDA they train on the CPU over gloo.
Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500).
USAGE
}
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    usage
    exit 0
fi
if [ $# -lt 2 ]; then
    usage >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PORT=${PORT:-29500}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec python -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
