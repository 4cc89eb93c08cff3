# Sourced after device_lib.sh: memory_targets LIMIT runs the memory targets of issue 11, three
# processes at once, each capped at 24 GB by torch.cuda.set_per_process_memory_fraction (a peak is
# per process, so running them side by side changes their speed, not their peaks): the 24 GB
# config at 8B for 50 iterations and its validation, and QLoRA (nf4 base) at 8B and 14B, micro-batch 1.
# Needs bitsandbytes among the carried wheels (docs/bench/make_wheels.sh).
memory_targets() { local limit=$1
  local M="$B --no-model-step --config configs/vessel_lora_8b_24g.py --memory-cap-gib 24"
  run "$limit" 8b_24g $M --work-dir /tmp/w24 --preset sa2va-internvl3-8b --e2e-steps 10,30,9 &
  run "$limit" qlora_8b $M --work-dir /tmp/wq8 --preset sa2va-internvl3-8b --batch-size 1 --e2e-steps 5,10,4 --cfg-options model.quantize_base=nf4 &
  run "$limit" qlora_14b $M --work-dir /tmp/wq14 --preset sa2va-internvl3-14b --batch-size 1 --e2e-steps 5,10,4 --cfg-options model.quantize_base=nf4 &
  wait; }
