#!/usr/bin/env bash
# Device call 25 (not run yet; its b32 stream-sampler row ran in call 26): the shipped config at b8,
# compiled, end to end beside the model step (plain, fast) in one process (issue 11: >= 1.8x plain and
# >= 90% of fast); then the shipped config at 8B (b32, compiled, ZeRO-2; target >= 33 samples/s).
# Logs are packed after each run, so what ran comes back even if the call runs out.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
L=/tmp/logs; mkdir -p $L
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
run() { local t=$1 label=$2; shift 2; echo "=== $label (at ${SECONDS} s): $*"; local s=$(date +%s)
  timeout -s ABRT -k 15 "$t" "$@" --label "$label" --out "$L/$label.json" > "$L/$label.log" 2>&1; local rc=$?
  echo "rc $rc wall $(( $(date +%s) - s )) s"; grep -E "samples/s|x plain|Error|Traceback" "$L/$label.log" | grep -v WARN | cut -c1-320 | tail -6
  grep "Iter(train)" "$L/$label.log" | sed -E 's/loss:.*//' | cut -c60-170 | tail -3
  tar czf $OUT/call25_logs.tar.gz -C /tmp logs; }
run 330 2b_b8_compiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,16,4
run 240 8b_b32_shipped $B --preset sa2va-internvl3-8b --no-model-step --e2e-steps 6,10,3
