#!/usr/bin/env bash
# Device call 62: micro-batch 32 as shipped (CUDA graphs over the compiled layers on), 8B and
# 2B, and 2B under ZeRO-2 beside the plain runner. Written for call 61's machine, held, so the b32
# targets and ZeRO-2's cost would come from the machine of call 61's b8 runs; it ran on a fresh one
# (the device was taken back between the calls).
set -uo pipefail
CALL=call62
source docs/bench/device_lib.sh
ls /tmp/inductor >/dev/null 2>&1 && echo "inductor cache present: $(du -sh /tmp/inductor | cut -f1)"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks_62.csv 2>&1 &
E="$B --preset sa2va-internvl3-2b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks"
run 240 b32_8b_shipped $B --preset sa2va-internvl3-8b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks
run 170 b32_2b_shipped $E
[ $SECONDS -lt 440 ] && run $(( 585 - SECONDS )) b32_2b_zero2 $E --e2e-deepspeed deepspeed_zero2 || echo "b32_2b_zero2 skipped at ${SECONDS} s"
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
