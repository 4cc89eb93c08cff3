#!/usr/bin/env bash
# Device call 38: the shipped config at micro-batch 32 after calls 36-37 (guard lagged by default,
# DeepSpeed's clipping norm fused), 2B then 8B; the last ~10 minutes of this session's device time.
# Each throughput window holds the shipped 1 logged iteration in 10.
set -uo pipefail
CALL=call38
source docs/bench/device_lib.sh
run 215 2b_b32_shipped $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,20,2
run 200 8b_b32_shipped $B --preset sa2va-internvl3-8b --no-model-step --e2e-steps 6,10,2
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
