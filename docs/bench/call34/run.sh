#!/usr/bin/env bash
# Device call 34: after call 33's sync audit was acted on (image splice by index, cached device
# constants, DeepSpeed's norm mask without host reads) and the guard reads its check one update
# late (skipping a bad step on the device through the fused AdamW's found_inf).
# 1. the shipped config (2B, b32) with the sync audit (first: it compiles the layers the b8 run reuses);
# 2. configs/vessel_lora.py at b8, compiled, beside the model step (plain, fast), with the sync audit;
# 3. if time is left: a run killed mid-start, then starts on the same machine.
set -uo pipefail
CALL=call34
source docs/bench/device_lib.sh
run 185 2b_b32_shipped $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,16,3 --sync-audit
run 330 2b_b8_compiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 8,16,3 --sync-audit
grep -h -A14 "device synchronisations" $L/2b_b32_shipped.log $L/2b_b8_compiled.log | cut -c1-240
if [ $SECONDS -lt 500 ]; then
  BT="python3 tools/benchmark.py --end-to-end --work-dir /tmp/w"
  timeout -s KILL 20 $BT --preset tiny --no-model-step --label killed --batch-size 8 --workers 12 > $L/killed.log 2>&1
  for i in 1 2; do run 35 start_$i $BT --preset tiny --no-model-step --batch-size 8 --workers 12 --e2e-steps 1,1,1 \
    --cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False; done
fi
grep -l "segmentation fault" $L/*.log
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
