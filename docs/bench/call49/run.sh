#!/usr/bin/env bash
# Device call 49, on a fresh machine (this session's wheels, no inductor cache: every first step
# compiles cold). configs/vessel_lora.py as shipped: the plain runner on one process with bf16
# trainables and fp32 masters (engine/master_weights.py) and, new in this call, right-padded
# batches reaching the LLM without a padding mask (causal_mask_for_right_padding, models/speed.py;
# the model step's `fast` has it too). 2B b8 beside the plain and `fast` model steps in one
# process, then micro-batch 32 at 2B and 8B as time allows.
set -uo pipefail
CALL=call49
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft, mmengine, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'mmengine', mmengine.__version__, 'deepspeed', deepspeed.__version__)"
run 330 b8_shipped_beside_model_step $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --sync-audit --stacks
left=$(( 560 - SECONDS )); [ $left -gt 230 ] && left=230
[ $left -ge 120 ] && run $left b32_2b_shipped $B --preset sa2va-internvl3-2b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks || echo "2B b32 skipped at ${SECONDS} s"
left=$(( 565 - SECONDS ))
[ $left -ge 130 ] && run $left b32_8b_shipped $B --preset sa2va-internvl3-8b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks || echo "8B b32 skipped at ${SECONDS} s"
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
