#!/usr/bin/env bash
# Device call 33 (not run yet): the throughput targets of issue 11 after the fused guard norms
# (call 31's machine was too slow to give the 2B figures), then starts right after a killed run
# (call 32's worker segfault; the runner now turns faulthandler on in every fork-server worker).
# Call 30 took 226 s (b8) and 156 s (b32); give a slower machine room: this call is ~560 s.
set -uo pipefail
CALL=call33
source docs/bench/device_lib.sh
run 270 2b_b8_compiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 8,16,3
run 200 2b_b32_shipped $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,16,3
# a run killed mid-start, then three starts on the same machine (tiny preset: seconds each)
timeout -s KILL 25 $B --preset sa2va-internvl3-2b --no-model-step --label killed > $L/killed.log 2>&1
for i in 1 2 3; do run 60 start_$i $B --preset tiny --no-model-step --batch-size 8 --workers 12 --e2e-steps 1,1,1 \
  --no-compile --cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False; done
grep -l "segmentation fault\|Fatal Python error" $L/*.log
