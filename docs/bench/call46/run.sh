#!/usr/bin/env bash
# Device call 46, the first of three on one machine (calls 46-48, each started while the last one's
# machine was still warm): every target of issue 11 in one device run.
# This call: 2B b8 through configs/vessel_lora.py as shipped (one process: the plain runner with
# bf16 trainables and fp32 masters, engine/master_weights.py), beside the plain and `fast` model
# steps in the same process; then b8 under ZeRO-2 on the same machine.
set -uo pipefail
CALL=call46
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
run 330 b8_M_shipped_beside_model_step $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --sync-audit --stacks
save_inductor_cache
left=$(( 555 - SECONDS ))
[ $left -ge 100 ] && run $left b8_Z_zero2 $B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 10,20,3 --e2e-deepspeed deepspeed_zero2 --stacks || echo "ZeRO-2 run skipped at ${SECONDS} s"
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
