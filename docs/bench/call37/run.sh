#!/usr/bin/env bash
# Device call 37: b8 after call 36 (the guard lagged by default, DeepSpeed's clipping norm fused),
# beside the model step; then whether the loader's work in the trainer's process slows the host-bound
# step: call 36's one split iteration after a profiled window (loader queues full, workers idle) ran
# in 239.7 ms against 298.6 ms in steady state, every stage faster.
#   A   b8 as shipped beside the model step (plain, fast), with the sync audit (cold compile);
#   W0  no loader workers: each batch is made in the main thread (its data wait is that), so the
#       split's forward/backward/optimizer show the step with no loader work beside it;
#   NP  8 workers without pinned memory (no pin-memory thread in the trainer).
set -uo pipefail
CALL=call37
source docs/bench/device_lib.sh
run 300 b8_A_shipped $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --sync-audit
E="$B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 10,20,3"
run 120 b8_W0_no_workers $E --workers 0
run 110 b8_NP_no_pin $E --cfg-options train_dataloader.pin_memory=False
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
