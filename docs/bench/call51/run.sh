#!/usr/bin/env bash
# Device call 51 (written for the next session, not run yet): first `bash docs/bench/make_wheels.sh`
# here, then carry [".whl", ".carry"]. The b8 step through the runner took 233 ms in call 49
# against the `fast` model step's 160 ms, with one device sync left per step (the image splice's
# masked_scatter backward). On one machine: the shipped config at b8; the same with the indexed
# splice (no sync left; models/speed.py indexed_image_splice, off until this measures it); then the
# shipped config with torch.profiler over the split window, whose named ranges give each stage's
# device time beside the model step's breakdown.
set -uo pipefail
CALL=call51
source docs/bench/device_lib.sh
python3 -c "import bitsandbytes, tensorboard, mmengine, deepspeed, peft, transformers; print('imports ok', transformers.__version__)" || exit 1
E="$B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 10,20,3 --stacks"
run 230 b8_shipped $E --sync-audit
run 150 b8_indexed_splice $E --sync-audit --cfg-options model.indexed_image_splice=True
run 150 b8_shipped_profiled $E --profile split
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
