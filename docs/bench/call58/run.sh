#!/usr/bin/env bash
# Device call 58 (a fresh machine; the session's last 540 s of device time): ZeRO-2's cost on one GPU
# at the shipped micro-batch 32 (2B), where the step is GPU-bound; at b8 (call 55) the host-bound
# step spread too much between processes to separate a 10% cost. Plain runner, ZeRO-2, plain again,
# back to back (target: ZeRO-2 at most 10% slower than the plain runner).
set -uo pipefail
CALL=call58
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks_58.csv 2>&1 &
E="$B --preset sa2va-internvl3-2b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks"
run 240 b32_plain_runner $E
[ $SECONDS -lt 300 ] && run 140 b32_zero2 $E --e2e-deepspeed deepspeed_zero2 || echo "b32_zero2 skipped at ${SECONDS} s"
[ $SECONDS -lt 320 ] && run $(( 435 - SECONDS )) b32_plain_runner_again $E || echo "b32_plain_runner_again skipped at ${SECONDS} s"
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
