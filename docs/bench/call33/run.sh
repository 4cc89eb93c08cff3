#!/usr/bin/env bash
# Device call 33: after the forward's syncs went (the collate's batch layout) and ZeRO-2's
# overlap_comm epilogue sync on one rank; the guard still reads its gradient check every step.
# 1. configs/vessel_lora.py at b8, compiled, beside the model step (plain, fast), with the sync audit;
# 2. the shipped config (2B, b32) with the sync audit;
# 3. a run killed mid-start, then three starts on the same machine (call 32's worker segfault;
#    faulthandler is now on in every fork-server worker).
set -uo pipefail
CALL=call33
source docs/bench/device_lib.sh
run 250 2b_b8_compiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 8,16,3 --sync-audit
run 175 2b_b32_shipped $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,16,3 --sync-audit
grep -h -A12 "device synchronisations" $L/2b_b8_compiled.log $L/2b_b32_shipped.log | cut -c1-240
timeout -s KILL 25 $B --preset sa2va-internvl3-2b --no-model-step --label killed > $L/killed.log 2>&1
for i in 1 2 3; do run 40 start_$i $B --preset tiny --no-model-step --batch-size 8 --workers 12 --e2e-steps 1,1,1 \
  --device cuda --cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False; done
grep -l "segmentation fault\|Fatal Python error" $L/*.log
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
