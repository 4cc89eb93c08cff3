#!/usr/bin/env bash
# Device call 55 (written for the next session, not run yet; fresh machine, `bash docs/bench/make_wheels.sh`
# here first, carry [".whl", ".carry"]). The two targets of issue 11 that calls 51-54 did not re-measure:
#   1. 8B at micro-batch 32 through configs/vessel_lora.py as shipped (plain runner on one GPU; target 33);
#   2. ZeRO-2's cost on one GPU against the shipped plain runner at 2B b8, the two processes back to
#      back (target: at most 10%; compare within this call only, calls 51-52 spread 39.9-50.3 at b8).
set -uo pipefail
CALL=call55
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks.csv 2>&1 &
run 260 b32_8b_shipped $B --preset sa2va-internvl3-8b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks
E="$B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --stacks --e2e-steps 10,20,3"
[ $SECONDS -lt 400 ] && run 150 b8_plain_runner $E || echo "b8 plain skipped at ${SECONDS} s"
[ $SECONDS -lt 460 ] && run 130 b8_zero2 $E --e2e-deepspeed deepspeed_zero2 || echo "b8 zero2 skipped at ${SECONDS} s"
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
