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
M="$B --no-model-step --config configs/vessel_lora_8b_24g.py --memory-cap-gib 24"
run 230 8b_24g $M --work-dir /tmp/w24 --preset sa2va-internvl3-8b --e2e-steps 10,30,9 &
run 230 qlora_8b $M --work-dir /tmp/wq8 --preset sa2va-internvl3-8b --batch-size 1 --e2e-steps 5,10,4 --cfg-options model.quantize_base=nf4 &
run 230 qlora_14b $M --work-dir /tmp/wq14 --preset sa2va-internvl3-14b --batch-size 1 --e2e-steps 5,10,4 --cfg-options model.quantize_base=nf4 &
wait
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
