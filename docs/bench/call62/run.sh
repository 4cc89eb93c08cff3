#!/usr/bin/env bash
# Device call 62 (call 60's machine, held): call 57's memory targets and ten starts again, on the
# machine of calls 60-61 (the starts now train with CUDA graphs over the compiled layers).
set -uo pipefail
CALL=call62
source docs/bench/device_lib.sh
python3 -c "import bitsandbytes, deepspeed; print('bitsandbytes', bitsandbytes.__version__, 'deepspeed', deepspeed.__version__)"
source docs/bench/memory_targets.sh
memory_targets 270
source docs/bench/starts.sh
[ $SECONDS -lt 400 ] && starts 1 5 90 || echo "starts 1-5 skipped at ${SECONDS} s"
[ $SECONDS -lt 480 ] && starts 6 10 90 || echo "starts 6-10 skipped at ${SECONDS} s"
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
