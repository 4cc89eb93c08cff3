#!/usr/bin/env bash
# Device call 28: DeepSpeed ZeRO-2 against --deepspeed none, 2B, micro-batch 8, compile off, one call,
# one after the other on the same machine (issue 11: ZeRO-2 costs at most 10% over the same step).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
L=/tmp/logs; mkdir -p $L
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w --preset sa2va-internvl3-2b --no-model-step --batch-size 8 --e2e-steps 5,10,3 --no-compile"
C="--cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False"
for ds in zero2 none; do s=$(date +%s); echo "=== $ds (at ${SECONDS} s)"
  extra=""; [ $ds = none ] && extra="--e2e-deepspeed none"
  timeout -s ABRT -k 10 150 $B $extra $C --label 2b_b8_$ds --out $L/2b_b8_$ds.json > $L/2b_b8_$ds.log 2>&1
  echo "rc $? wall $(( $(date +%s) - s )) s"; grep -E "samples/s|Error|Traceback" $L/2b_b8_$ds.log | grep -v WARN | cut -c1-320 | tail -3
  tar czf $OUT/call28_logs.tar.gz -C /tmp logs
done
