#!/usr/bin/env bash
# Device call 51 (written for the next session, not run yet): first `bash docs/bench/make_wheels.sh`
# here, then carry [".whl", ".carry"]. Where the b8 step's other 73 ms go (call 49: 233 ms through
# the runner against the `fast` model step's 160 ms): the same b8 run with torch.profiler over the
# split window, whose named ranges (sa2va/*, step/*) give each stage's device time beside the model
# step's breakdown. Then the memory targets with bitsandbytes carried (call 50 had none).
set -uo pipefail
CALL=call51
source docs/bench/device_lib.sh
python3 -c "import bitsandbytes, tensorboard, mmengine, deepspeed, peft, transformers; print('imports ok', transformers.__version__)" || exit 1
run 330 b8_shipped_profiled $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --profile split --stacks
source docs/bench/memory_targets.sh
memory_targets 230
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
