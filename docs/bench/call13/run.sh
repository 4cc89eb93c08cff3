#!/usr/bin/env bash
# Device call 13: the end-to-end benchmark (tools/train.py's path) on one H200.
# Run from the repository root on the device, with the pinned wheels in .whl/ and the real
# tokenizer files (vocab.json + merges.txt, no tokenizer.json) in .carry/tok8b/.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
run() { local label=$1; shift; echo "=== $label: $*"; timeout "${T:-300}" "$@" --label "$label" --out "$OUT/$label.json" 2>&1 | grep -v "WARNING\|warn" | tail -n 12; }
# 1. 2B, micro-batch 8: the shipped config (ZeRO-2), beside the model step (plain and `fast`)
T=330 run 2b_b8 $B --preset sa2va-internvl3-2b --batch-size 8
# 2. the same without DeepSpeed (plain runner, bf16, fp32 trainables)
T=150 run 2b_b8_nods $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-deepspeed none --no-model-step
# 3. the shipped config as is: micro-batch 32
T=150 run 2b_b32 $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 4,8,2
