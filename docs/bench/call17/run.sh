#!/usr/bin/env bash
# Device call 17: after the exit-hang fix, the update-norm fix and eager-in-eval compile.
# 2B micro-batch 8: ZeRO-2 as shipped (profiled) beside the model step, ZeRO-2 with overlap_comm and
# contiguous_gradients off, the plain runner; then the shipped config (micro-batch 32) compiled.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
NC="--no-compile --cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False"
python3 - <<'PY'
import json
c = json.load(open('configs/deepspeed/deepspeed_zero2.json'))
c['zero_optimization'].update(overlap_comm=False, contiguous_gradients=False)
json.dump(c, open('/tmp/ds_nooverlap.json', 'w'), indent=1)
PY
# SIGABRT on timeout: faulthandler prints every thread's stack, so a hang says where it is
run() { local t=$1 label=$2; shift 2; echo "=== $label: $*"; local s=$(date +%s)
  timeout -s ABRT -k 15 "$t" "$@" --label "$label" --out "$OUT/$label.json" > "$OUT/$label.log" 2>&1; local rc=$?
  echo "rc $rc wall $(( $(date +%s) - s )) s"; grep -E "samples/s|x plain|Error|error|Traceback|File \"" "$OUT/$label.log" | grep -v WARN | cut -c1-300 | tail -12; }
run 200 2b_b8 $B --preset sa2va-internvl3-2b --batch-size 8 --profile $NC
run 110 2b_b8_ds_nooverlap $B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step $NC deepspeed=/tmp/ds_nooverlap.json
run 100 2b_b8_nods $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-deepspeed none --no-model-step $NC
left=$(( 560 - SECONDS )); echo "left for the compiled run: $left s"
run $left 2b_b32_compiled $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 6,8,2
