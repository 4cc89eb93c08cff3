#!/usr/bin/env bash
# Device call 35: call 34's b8 run was slower than call 30's (21.88 against 32.17 samples/s).
# Side by side on one machine, b8 compiled end to end, to find which change of this round did it:
#   A  HEAD (overlap_comm off on one rank, the guard read one update late);
#   C  overlap_comm on, the guard synchronous (call 30's settings, with the batch layout);
#   B  overlap_comm on, the guard read late;
#   D  overlap_comm off, the guard synchronous.
set -uo pipefail
CALL=call35
source docs/bench/device_lib.sh
python3 - <<'PY'
import json
ds = json.load(open('configs/deepspeed/deepspeed_zero2.json'))
ds['zero_optimization']['overlap_comm'] = True
json.dump(ds, open('/tmp/zero2_overlap.json', 'w'), indent=1)
PY
E="$B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 6,12,2"
run 170 b8_A_head $E
run 110 b8_C_overlap_sync $E --cfg-options deepspeed=/tmp/zero2_overlap.json default_hooks.gradient_guard.lagged=False
run 100 b8_B_overlap_lagged $E --cfg-options deepspeed=/tmp/zero2_overlap.json
[ $SECONDS -lt 370 ] && run 90 b8_D_sync $E --cfg-options default_hooks.gradient_guard.lagged=False
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
