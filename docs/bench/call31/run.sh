#!/usr/bin/env bash
# Device call 31: every throughput target of issue 11 in one call, after the guard's per-unit norms
# became one fused kernel per dtype (call 30 logged guard_ms 8-16 per iteration):
# 1. configs/vessel_lora.py at b8, compiled, end to end beside the model step (plain, fast);
# 2. the shipped config as it is (2B, b32, compiled, ZeRO-2);
# 3. the shipped config at 8B (b32, compiled, ZeRO-2).
set -uo pipefail
CALL=call31
source docs/bench/device_lib.sh
run 250 2b_b8_compiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 8,16,3
run 175 2b_b32_shipped $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,16,3
run 160 8b_b32_shipped $B --preset sa2va-internvl3-8b --no-model-step --e2e-steps 6,8,2
