#!/usr/bin/env bash
# Device call 39: on one process configs/vessel_lora.py now trains with the plain runner
# (deepspeed_one_process='none': fp32 trainables over the bf16 base, SyncFreeOptimWrapper), where
# ZeRO-2 ran before. Side by side on one machine:
#   A  b8 as shipped beside the model step (plain, fast), with the sync audit (cold compile);
#   Z  b8 with ZeRO-2 as it shipped until now (--e2e-deepspeed deepspeed_zero2);
# then five starts at once of tools/train.py configs/vessel_lora.py with 12 loader workers each
# (tiny preset, the real tokenizer files, tokenizer cache empty), faulthandler on.
set -uo pipefail
CALL=call39
source docs/bench/device_lib.sh
run 300 b8_A_shipped $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --sync-audit
run 140 b8_Z_zero2 $B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 10,20,3 --e2e-deepspeed deepspeed_zero2
save_inductor_cache
source docs/bench/starts.sh
[ $SECONDS -lt 450 ] && starts 1 5 130 || echo "starts skipped at ${SECONDS} s: the call would run out"
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
