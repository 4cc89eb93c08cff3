#!/usr/bin/env bash
# Device call 22 (one process at a time, nothing beside it): the loader's capacity with the shipped
# augmentation; b8 end to end, compiled, beside the model step (plain, fast) in one process; the
# shipped micro-batch 32, compiled, ZeRO-2, with 12 loader workers.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
L=/tmp/logs; mkdir -p $L
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
run() { local t=$1 label=$2; shift 2; echo "=== $label: $*"; local s=$(date +%s)
  timeout -s ABRT -k 15 "$t" "$@" --label "$label" --out "$L/$label.json" > "$L/$label.log" 2>&1; local rc=$?
  echo "rc $rc wall $(( $(date +%s) - s )) s"; grep -E "samples/s|x plain|Error|Traceback" "$L/$label.log" | grep -v WARN | cut -c1-320 | tail -6; }
echo "=== loader alone, shipped augmentation, b32"
timeout 90 python3 tools/benchmark.py --dataload-only --dataload-augment --batch-size 32 --dataload-workers 8,12 --dataload-sizes 512 --dataload-n 256 > $L/dataload.log 2>&1; echo "rc $?"; grep -E "samples/s" $L/dataload.log
run 270 2b_b8_compiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,16,4
run 220 2b_b32_shipped_w12 $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,10,3 --workers 12
grep "Iter(train)" $L/2b_b32_shipped_w12.log | sed -E 's/loss:.*//' | cut -c60-170 | tail -4
tar czf $OUT/call22_logs.tar.gz -C /tmp logs
