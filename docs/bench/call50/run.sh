#!/usr/bin/env bash
# Device call 50, the session's last device time (about 370 s left): the memory targets, three
# processes at once, each capped at 24 GB by torch.cuda.set_per_process_memory_fraction (a peak is
# per process, so running them side by side changes their speed, not their peaks).
set -uo pipefail
CALL=call50
source docs/bench/device_lib.sh
M="$B --no-model-step --config configs/vessel_lora_8b_24g.py --memory-cap-gib 24"
run 250 8b_24g $M --work-dir /tmp/w24 --preset sa2va-internvl3-8b --e2e-steps 10,30,9 &
run 250 qlora_8b $M --work-dir /tmp/wq8 --preset sa2va-internvl3-8b --batch-size 1 --e2e-steps 5,10,4 --cfg-options model.quantize_base=nf4 &
run 250 qlora_14b $M --work-dir /tmp/wq14 --preset sa2va-internvl3-14b --batch-size 1 --e2e-steps 5,10,4 --cfg-options model.quantize_base=nf4 &
wait
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
