#!/usr/bin/env bash
# Device call 27: Sa2VA-Qwen2.5-VL-3B end to end at micro-batch 8 (ZeRO-2, compile off); call 26 gave it
# 150 s and it was cut off after the first, checked, optimizer step.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
L=/tmp/logs; mkdir -p $L; s=$(date +%s)
timeout -s ABRT -k 10 320 python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w \
  --preset sa2va-qwen25vl-3b --no-model-step --batch-size 8 --e2e-steps 3,6,2 --no-compile \
  --cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False \
  --label sa2va-qwen25vl-3b_b8 --out $L/sa2va-qwen25vl-3b_b8.json > $L/sa2va-qwen25vl-3b_b8.log 2>&1
echo "rc $? wall $(( $(date +%s) - s )) s"; grep -E "samples/s|Error|Traceback" $L/*.log | grep -v WARN | cut -c1-320 | tail -4
grep "Iter(train)" $L/*.log | sed -E 's/loss:.*//' | cut -c60-170 | tail -4
tar czf $OUT/call27_logs.tar.gz -C /tmp logs
