#!/usr/bin/env bash
# Device call 18: DeepSpeed's bf16 overflow scan off (the guard checks), generation under the
# model's autocast; 2B micro-batch 8 beside the model step, the plain runner, and the shipped
# micro-batch 32 compiled under ZeRO-2 and under the plain runner (recompiles logged).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
NC="--no-compile --cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False"
run() { local t=$1 label=$2; shift 2; echo "=== $label: $*"; local s=$(date +%s)
  timeout -s ABRT -k 15 "$t" "$@" --label "$label" --out "$OUT/$label.json" > "$OUT/$label.log" 2>&1; local rc=$?
  echo "rc $rc wall $(( $(date +%s) - s )) s"; grep -E "samples/s|x plain|Error|Traceback" "$OUT/$label.log" | grep -v WARN | cut -c1-300 | tail -6
  grep -c "Recompiling" "$OUT/$label.log"; }
run 150 2b_b8 $B --preset sa2va-internvl3-2b --batch-size 8 $NC
run 90 2b_b8_nods $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-deepspeed none --no-model-step $NC
export TORCH_LOGS=recompiles
run 170 2b_b32_compiled $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,8,3
left=$(( 570 - SECONDS )); echo "left: $left s"
run $left 2b_b32_compiled_nods $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,8,3 --e2e-deepspeed none
