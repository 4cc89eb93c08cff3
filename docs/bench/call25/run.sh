#!/usr/bin/env bash
# Device call 25 (not run yet): the shipped config (b32, compiled, ZeRO-2) with the stream sampler
# (datasets/epoch_samplers.py; call 22 lost 0.46 s per iteration at every epoch restart) and the
# shipped 8 workers; then b8 compiled end to end beside the model step (plain, fast) in one process.
# Logs are packed after each run, so what ran comes back even if the call runs out.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
L=/tmp/logs; mkdir -p $L
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
run() { local t=$1 label=$2; shift 2; echo "=== $label: $*"; local s=$(date +%s)
  timeout -s ABRT -k 15 "$t" "$@" --label "$label" --out "$L/$label.json" > "$L/$label.log" 2>&1; local rc=$?
  echo "rc $rc wall $(( $(date +%s) - s )) s"; grep -E "samples/s|x plain|Error|Traceback" "$L/$label.log" | grep -v WARN | cut -c1-320 | tail -6
  grep "Iter(train)" "$L/$label.log" | sed -E 's/loss:.*//' | cut -c60-170 | tail -3
  tar czf $OUT/call25_logs.tar.gz -C /tmp logs; }
run 200 2b_b32_shipped_stream_w8 $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,16,3
run 340 2b_b8_compiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,16,4
