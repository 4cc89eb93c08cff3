#!/usr/bin/env bash
# Device call 53, the session's last device time (about 620 s left): the memory targets with
# bitsandbytes carried (call 50 had none), three processes at once each capped at 24 GB, then ten
# starts of tools/train.py with 12 loader workers in two waves of five.
set -uo pipefail
CALL=call53
source docs/bench/device_lib.sh
python3 -c "import bitsandbytes, deepspeed; print('bitsandbytes', bitsandbytes.__version__, 'deepspeed', deepspeed.__version__)"
source docs/bench/memory_targets.sh
memory_targets 270
source docs/bench/starts.sh
[ $SECONDS -lt 380 ] && starts 1 5 90 || echo "starts 1-5 skipped at ${SECONDS} s"
[ $SECONDS -lt 450 ] && starts 6 10 90 || echo "starts 6-10 skipped at ${SECONDS} s"
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
