#!/usr/bin/env bash
# Device call 45, on call 44's warm machine (its data, wheels and inductor cache in /tmp), the last
# ~7 minutes: 2B b32 with the plain runner on one process; then b8 with ZeRO-2, for the same machine.
set -uo pipefail
CALL=call45
source docs/bench/device_lib.sh
run 215 b32_plain_runner $B --preset sa2va-internvl3-2b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --cfg-options deepspeed_one_process=none --stacks
left=$(( 365 - SECONDS ))
[ $left -ge 100 ] && run $left b8_Z_zero2 $B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 10,20,3 --e2e-deepspeed deepspeed_zero2 --stacks || echo "ZeRO-2 run skipped at ${SECONDS} s"
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
