#!/usr/bin/env bash
# Device call 57, the third of three on one held H200 (after calls 55-56, same machine): the 24 GB
# targets (8B config capped at 24 GB: 50 iterations + validation <= 21.5 GiB; QLoRA nf4 8B <= 14 GiB,
# 14B <= 22 GiB at micro-batch 1) and ten starts of tools/train.py with 12 workers.
set -uo pipefail
CALL=call57
source docs/bench/device_lib.sh
python3 -c "import bitsandbytes, deepspeed; print('bitsandbytes', bitsandbytes.__version__, 'deepspeed', deepspeed.__version__)"
source docs/bench/memory_targets.sh
memory_targets 270
source docs/bench/starts.sh
[ $SECONDS -lt 400 ] && starts 1 5 90 || echo "starts 1-5 skipped at ${SECONDS} s"
[ $SECONDS -lt 480 ] && starts 6 10 90 || echo "starts 6-10 skipped at ${SECONDS} s"
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
