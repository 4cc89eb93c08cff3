#!/usr/bin/env bash
# Device call 14: the end-to-end benchmark (tools/train.py's path) on one H200, compile off
# (call 13 spent its whole budget compiling the shipped config's layers before the first step).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
NC="--no-compile --cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False"
run() { local t=$1 label=$2; shift 2; echo "=== $label: $*"; timeout "$t" "$@" --label "$label" --out "$OUT/$label.json" > "$OUT/$label.log" 2>&1; echo "rc $?"; grep -E "samples/s|x plain|Error|error" "$OUT/$label.log" | grep -v WARN | cut -c1-400 | tail -8; }
run 200 2b_b8 $B --preset sa2va-internvl3-2b --batch-size 8 $NC
run 100 2b_b8_nods $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-deepspeed none --no-model-step $NC
run 130 2b_b32 $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 4,8,2 $NC
