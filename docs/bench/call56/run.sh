#!/usr/bin/env bash
# Device call 56, the second of three on one held H200 (after call 55, same machine, its inductor
# cache in /tmp): micro-batch 32 through configs/vessel_lora.py as shipped, 8B then 2B
# (targets: >= 33 samples/s at 8B, >= 60 at 2B; data wait <= 5% with the shipped workers).
set -uo pipefail
CALL=call56
source docs/bench/device_lib.sh
ls /tmp/inductor >/dev/null 2>&1 && echo "inductor cache present: $(du -sh /tmp/inductor | cut -f1)"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks_56.csv 2>&1 &
run 290 b32_8b_shipped $B --preset sa2va-internvl3-8b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks
run $(( 585 - SECONDS )) b32_2b_shipped $B --preset sa2va-internvl3-2b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
