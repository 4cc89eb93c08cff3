#!/usr/bin/env bash
# Device call 36 (not run yet): side by side on one machine, b8 compiled end to end, after call
# 34's b8 figure (21.88 samples/s against call 30's 32.17). The shipped defaults now leave out the
# two suspects that are switches (the lagged guard is opt-in; the image splice is masked_scatter
# again). The first run has room for a cold machine's compile (call 34 took 192 s with the model
# steps); the next reuse the warm inductor cache. ~560 s.
#   A  shipped: guard synchronous, overlap_comm off on one rank; beside the model step (plain, fast);
#   B  A + the guard read one update late (lagged=None: on with the fused AdamW on CUDA);
#   C  A with overlap_comm on (call 30's DeepSpeed settings).
set -uo pipefail
CALL=call36
source docs/bench/device_lib.sh
python3 - <<'PY'
import json
ds = json.load(open('configs/deepspeed/deepspeed_zero2.json'))
ds['zero_optimization']['overlap_comm'] = True
json.dump(ds, open('/tmp/zero2_overlap.json', 'w'), indent=1)
PY
run 300 b8_A_shipped $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 8,16,3 --sync-audit
E="$B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 6,16,2"
run 130 b8_B_lagged $E --cfg-options default_hooks.gradient_guard.lagged=None
run 120 b8_C_overlap $E --cfg-options deepspeed=/tmp/zero2_overlap.json
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
save_inductor_cache
