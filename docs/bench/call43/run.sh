#!/usr/bin/env bash
# Device call 43. Call 42 ran the plain runner (deepspeed_one_process=none) at b8 after the model step
# in one process: about 220 s into training its first iteration had not ended (call 41, without the
# model step: 107 s). tools/benchmark.py now resets dynamo between the model step and the user's run
# and can write its stacks every S s (--stacks-every). Call 42's inductor cache is carried.
#   P1  b8, plain runner, no model step: its graphs compiled and cached (stacks every 30 s);
#   P2  b8, plain runner beside the model step (plain, fast) in one process, sync audit.
set -uo pipefail
CALL=call43
source docs/bench/device_lib.sh
E="$B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --cfg-options deepspeed_one_process=none --stacks-every 30"
run 300 b8_P1_plain_runner $E --no-model-step
save_inductor_cache
left=$(( 570 - SECONDS )); [ $left -gt 300 ] && left=300
run $left b8_P2_plain_runner_beside_model_step $E --sync-audit
save_inductor_cache
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
