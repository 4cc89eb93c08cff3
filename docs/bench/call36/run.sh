#!/usr/bin/env bash
# Device call 36: the shipped state after call 33 (batch layout, per-device constants, DeepSpeed's
# norm mask without host reads, overlap_comm off on one rank, guard synchronous, masked_scatter
# splice), b8 beside the model step, then where its unsynchronised step goes, then the lagged guard.
#   A  b8 as shipped beside the model step (plain, fast), with the sync audit; the first run has room
#      for a cold machine's compile (call 34: 192 s with the model steps). 10,20,3: the throughput
#      window holds two logged iterations of 20, the shipped 1 in 10;
#   P  b8 again with torch.profiler over the unsynchronised throughput window (6 steady iterations,
#      no logged one): the host's self-CPU table and the trace show where the host waits;
#   L  A's run with the guard's check read one update late (lagged=None: on with the fused AdamW).
set -uo pipefail
CALL=call36
source docs/bench/device_lib.sh
run 300 b8_A_shipped $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --sync-audit
E="$B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step"
run 130 b8_P_profile $E --e2e-steps 10,6,1 --profile throughput
gzip -c /tmp/w/b8_P_profile_timing.trace.json > "$OUT/b8_P_profile.trace.json.gz" 2>/dev/null
cp /tmp/w/b8_P_profile_timing.profile.txt "$OUT/" 2>/dev/null
run 120 b8_L_lagged $E --e2e-steps 10,20,3 --cfg-options default_hooks.gradient_guard.lagged=None
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
save_inductor_cache
ls -la $OUT
