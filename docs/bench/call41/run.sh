#!/usr/bin/env bash
# Device call 41, the session's last ~7 minutes: the one-process lever side by side without the model
# step. Calls 39 and 40 each ran the model step first and then ran out of
# time in the shipped run's first, cold-compiled steps (this comment first said 6 s in: a misreading
# of the logs' clocks, corrected in docs/PERFORMANCE.md) (the plain runner's fp32 trainables
# give other graphs than the bf16 ones the model step compiled).
#   A  b8 as shipped (deepspeed_one_process='none': the plain runner), cold compile of its graphs;
#   Z  b8 with ZeRO-2 (--e2e-deepspeed deepspeed_zero2), as it shipped until call 39 (graphs cached).
set -uo pipefail
CALL=call41
source docs/bench/device_lib.sh
E="$B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 10,20,3"
run 230 b8_A_shipped $E --sync-audit
run $(( 350 - SECONDS )) b8_Z_zero2 $E --e2e-deepspeed deepspeed_zero2
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
