#!/usr/bin/env bash
# Device call 26: one end-to-end figure per Qwen-VL family at micro-batch 8 (issue 16; ZeRO-2, compile
# off), then the shipped config (b32, compiled, ZeRO-2, 8 workers) on the stream sampler (issue 11).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
L=/tmp/logs; mkdir -p $L
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
run() { local t=$1 label=$2; shift 2; echo "=== $label (at ${SECONDS} s): $*"; local s=$(date +%s)
  timeout -s ABRT -k 15 "$t" "$@" --label "$label" --out "$L/$label.json" > "$L/$label.log" 2>&1; local rc=$?
  echo "rc $rc wall $(( $(date +%s) - s )) s"; grep -E "samples/s|x plain|Error|Traceback" "$L/$label.log" | grep -v WARN | cut -c1-320 | tail -6
  grep "Iter(train)" "$L/$label.log" | sed -E 's/loss:.*//' | cut -c60-170 | tail -3
  tar czf $OUT/call26_logs.tar.gz -C /tmp logs; }
Q="--no-model-step --batch-size 8 --e2e-steps 4,8,2 --no-compile --cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False"
run 150 sa2va-qwen25vl-3b_b8 $B --preset sa2va-qwen25vl-3b $Q
run 150 sa2va-qwen3vl-4b_b8 $B --preset sa2va-qwen3vl-4b $Q
run 220 2b_b32_shipped_stream_w8 $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,16,3
