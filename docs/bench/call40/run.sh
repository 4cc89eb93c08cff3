#!/usr/bin/env bash
# Device call 40: call 39 again, with call 39's inductor cache (.carry/inductor.tgz): its b8 run as
# shipped (plain runner on one process) outran its 300 s limit in training (read later off the next run's first log line: about 75 s in), after the cold
# model-step compile. Side by side on one machine:
#   A  b8 as shipped (deepspeed_one_process='none') beside the model step (plain, fast);
#   Z  b8 with ZeRO-2 (--e2e-deepspeed deepspeed_zero2), as it shipped until call 39;
# then starts 6-10 of ten (five at once, 12 loader workers each; starts 1-5 ran in call 39).
set -uo pipefail
CALL=call40
source docs/bench/device_lib.sh
run 320 b8_A_shipped $B --preset sa2va-internvl3-2b --batch-size 8 --e2e-steps 10,20,3 --sync-audit
run 125 b8_Z_zero2 $B --preset sa2va-internvl3-2b --batch-size 8 --no-model-step --e2e-steps 10,20,3 --e2e-deepspeed deepspeed_zero2
source docs/bench/starts.sh
[ $SECONDS -lt 500 ] && starts 6 10 90 || echo "starts skipped at ${SECONDS} s: the call would run out"
save_inductor_cache
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
