#!/usr/bin/env bash
# Device call 44, the session's last (~14 minutes of device time left). Call 43's two runs were
# segfaults caused by the diagnostic itself: faulthandler's periodic stack dumps (--stacks-every,
# now removed) crashed the process while dynamo compiled. Call 43's inductor cache is carried.
#   P1  b8, plain runner (deepspeed_one_process=none), no model step: up to 250 s;
#   P2  b8, plain runner beside the model step (plain, fast) in one process (dynamo reset between).
set -uo pipefail
CALL=call44
source docs/bench/device_lib.sh
E="$B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --cfg-options deepspeed_one_process=none --stacks"
run 250 b8_P1_plain_runner $E --no-model-step
left=$(( 572 - SECONDS ))
run $left b8_P2_plain_runner_beside_model_step $E --sync-audit
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
