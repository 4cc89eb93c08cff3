#!/usr/bin/env bash
# Device call 42: the plain runner on one process (deepspeed_one_process=none) beside the model step,
# in one process, with the time calls 39-41 lacked (cold machine, no inductor cache carried):
#   A  b8 with the plain runner beside the model step (plain, fast), sync audit: up to 500 s;
#   then the inductor cache (model-step graphs + the plain runner's fp32-trainable graphs) comes back
#   for call 43; then, if time is left, ZeRO-2 at b8 without the model step (its bf16 graphs are cold).
set -uo pipefail
CALL=call42
source docs/bench/device_lib.sh
run 500 b8_A_plain_runner $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --sync-audit --cfg-options deepspeed_one_process=none
save_inductor_cache
left=$(( 575 - SECONDS ))
[ $left -ge 150 ] && run $left b8_Z_zero2 $B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 10,20,3 --e2e-deepspeed deepspeed_zero2 || echo "ZeRO-2 run skipped at ${SECONDS} s"
save_inductor_cache
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
