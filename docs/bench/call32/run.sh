#!/usr/bin/env bash
# Device call 32, as it ran (one command line, on the machine of call 31 while it was still warm: the
# wheels, /tmp/w and the inductor cache of call 31 were still there; 201 s of device time were left).
# The shipped config at 2B b32, the run call 31 cut off at its 175 s limit. No PYTHONFAULTHANDLER.
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache; mkdir -p /tmp/logs; ls /tmp | head
timeout -s ABRT -k 5 170 python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w \
  --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,16,3 --label 2b_b32_shipped_warm \
  --out /tmp/logs/2b_b32_shipped_warm.json > /tmp/logs/2b_b32_shipped_warm.log 2>&1; echo rc $?
tar czf $OUT/call32_logs.tar.gz -C /tmp logs
