#!/usr/bin/env bash
# Device call 30 (after the per-iteration synchronisations were removed: deferred loss read-out,
# non-blocking batch copies, the guard's timing syncs on log iterations only):
# 1. configs/vessel_lora.py at b8, compiled, end to end beside the model step (plain, fast) in one
#    process (issue 11: >= 1.8x plain and >= 90% of fast);
# 2. the shipped config as it is (2B, b32, compiled, ZeRO-2; target >= 60 samples/s).
set -uo pipefail
CALL=call30
source docs/bench/device_lib.sh
run 345 2b_b8_compiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,16,4
run 225 2b_b32_shipped $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,16,3
