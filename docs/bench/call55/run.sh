#!/usr/bin/env bash
# Device call 55, the first of three on one held H200 (calls 55-57; `bash docs/bench/make_wheels.sh`
# here first, carry [".whl", ".carry"]): every target of issue 11 on one machine.
#   1. b8: configs/vessel_lora.py as shipped, first in its process, then the plain / fast model steps
#      (target: >= 1.8x plain, >= 0.9x fast; data wait <= 5%);
#   2. ZeRO-2's cost on one GPU: the plain runner and ZeRO-2 at 2B b8, alternated (zero2, plain,
#      zero2, plain) so a drift of the machine shows (calls 51-52 spread 39.9-50.3 at b8 across
#      processes). Target: ZeRO-2 at most 10% slower.
set -uo pipefail
CALL=call55
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks.csv 2>&1 &
E="$B --preset sa2va-internvl3-2b --batch-size 8 --stacks --e2e-steps 10,20,3"
run 300 b8_shipped_then_model_step $E --sync-audit
[ $SECONDS -lt 330 ] && run 130 b8_zero2 $E --no-model-step --e2e-deepspeed deepspeed_zero2 || echo "b8_zero2 skipped at ${SECONDS} s"
[ $SECONDS -lt 430 ] && run 110 b8_plain_runner $E --no-model-step || echo "b8_plain_runner skipped at ${SECONDS} s"
[ $SECONDS -lt 470 ] && run 100 b8_zero2_again $E --no-model-step --e2e-deepspeed deepspeed_zero2 || echo "b8_zero2_again skipped at ${SECONDS} s"
[ $SECONDS -lt 480 ] && run $(( 585 - SECONDS )) b8_plain_runner_again $E --no-model-step || echo "b8_plain_runner_again skipped at ${SECONDS} s"
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
