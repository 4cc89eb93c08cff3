#!/usr/bin/env bash
# Device call 29: where the shipped config's b32 step goes (torch.profiler over 2 split iterations,
# with the model's named ranges sa2va/* and the step's step/*), then the shipped config at 8B
# (b32, compiled, ZeRO-2; issue 11 target >= 33 samples/s).
set -uo pipefail
CALL=call29
source docs/bench/device_lib.sh
run 240 2b_b32_profile $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 8,8,2 --profile
cp /tmp/w/2b_b32_profile_timing.profile.txt $L/ 2>/dev/null; tail -12 $L/2b_b32_profile_timing.profile.txt
gzip -c /tmp/w/2b_b32_profile_timing.trace.json > $OUT/trace_b32.json.gz 2>/dev/null; ls -la $OUT
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
run 320 8b_b32_shipped $B --preset sa2va-internvl3-8b --no-model-step --e2e-steps 6,10,3
