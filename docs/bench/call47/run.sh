#!/usr/bin/env bash
# Device call 47, on call 46's warm machine: micro-batch 32 (the shipped config's) at 2B and 8B,
# then b8 with the master weights off (fp32 trainables under autocast), the lever's other side.
set -uo pipefail
CALL=call47
source docs/bench/device_lib.sh
run 230 b32_2b_shipped $B --preset sa2va-internvl3-2b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks
run 230 b32_8b_shipped $B --preset sa2va-internvl3-8b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks
left=$(( 560 - SECONDS ))
[ $left -ge 110 ] && run $left b8_F_fp32_trainables $B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 10,20,3 --cfg-options master_weights=False --stacks || echo "fp32-trainables run skipped at ${SECONDS} s"
save_inductor_cache
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
