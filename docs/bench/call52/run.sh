#!/usr/bin/env bash
# Device call 52 (fresh machine; carry [".whl", ".carry"]). Call 51's four b8 runs of one config
# spread over 40-50 samples/s: the first (compiled cold, 159 ms per iteration, backward 41 ms) was
# the fastest; the next three (graphs from the warm inductor cache, on a GPU busy for minutes) had
# a 60-78 ms backward with the same forward. Call 49's run after the model step, 233 ms. Here:
#   1. b8 as shipped, first in its process, then the model-step references (the benchmark's new
#      default order): the ratio to `fast` as a fresh process meets it;
#   2. the same run alone, graphs from the warm cache;
#   3. the same run alone with an empty inductor cache (compiled cold again, on a GPU now hot).
# The GPU's clocks, power and temperature are logged every 2 s throughout: 2 against 3 separates
# the cache from the GPU's state.
set -uo pipefail
CALL=call52
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks.csv 2>&1 &
E="$B --preset sa2va-internvl3-2b --batch-size 8 --stacks --e2e-steps 10,20,3"
run 300 b8_shipped_then_model_step $E --sync-audit
run 110 b8_warm_cache $E --no-model-step
if [ $SECONDS -lt 360 ]; then
  TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_empty run $(( 575 - SECONDS )) b8_empty_cache $E --no-model-step
else echo "b8_empty_cache skipped at ${SECONDS} s"; fi
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
