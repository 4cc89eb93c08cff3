#!/usr/bin/env bash
# Device call 64 (call 62's machine, held): call 57's memory targets and ten starts again, on the
# machine of calls 62-63 (the starts run the tiny preset, uncompiled, as in call 57).
set -uo pipefail
CALL=call64
source docs/bench/device_lib.sh
python3 -c "import bitsandbytes, deepspeed; print('bitsandbytes', bitsandbytes.__version__, 'deepspeed', deepspeed.__version__)"
source docs/bench/memory_targets.sh
memory_targets 270
source docs/bench/starts.sh
[ $SECONDS -lt 400 ] && starts 1 5 90 || echo "starts 1-5 skipped at ${SECONDS} s"
[ $SECONDS -lt 480 ] && starts 6 10 90 || echo "starts 6-10 skipped at ${SECONDS} s"
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
