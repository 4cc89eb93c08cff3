#!/usr/bin/env bash
# Device call 51 (fresh machine; `bash docs/bench/make_wheels.sh` here first, carry [".whl", ".carry"]).
# Where the b8 iteration's 233 ms go (call 49) against the `fast` model step's 160 ms:
#   1. the shipped config at b8 with the sync audit (baseline, cold compile);
#   2. the same with indexed_image_splice on (no device read left in the step);
#   3. the same with the gradient guard and the update-norm hook off (what the per-step hooks cost);
#   4. the shipped config with torch.profiler over the unsynchronised throughput window: the GPU's
#      busy time per iteration beside its wall time says whether the host or the device sets the pace.
set -uo pipefail
CALL=call51
source docs/bench/device_lib.sh
python3 -c "import bitsandbytes, tensorboard, mmengine, deepspeed, peft, transformers; print('imports ok', transformers.__version__)"
E="$B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --stacks"
run 240 b8_shipped $E --e2e-steps 10,20,3 --sync-audit
run 140 b8_indexed_splice $E --e2e-steps 10,20,3 --sync-audit --cfg-options model.indexed_image_splice=True
run 130 b8_no_guard_no_update_norm $E --e2e-steps 10,20,3 --cfg-options default_hooks.gradient_guard=None default_hooks.update_norm=None
run 130 b8_profiled_throughput $E --e2e-steps 10,6,3 --profile throughput
# the Chrome trace is large; keep it compressed beside the tables if it fits one returned file
for t in $L/*.trace.json; do [ -f "$t" ] && gzip -1 "$t" && [ $(du -k "$t.gz" | cut -f1) -le 15000 ] && mv "$t.gz" "$OUT/" || rm -f "$t.gz"; done
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
