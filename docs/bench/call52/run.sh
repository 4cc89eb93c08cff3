#!/usr/bin/env bash
# Device call 52 (written for the next session, not run yet), on call 51's machine while it is warm:
# the memory targets with bitsandbytes carried (call 50 had none), then ten starts in two waves.
set -uo pipefail
CALL=call52
source docs/bench/device_lib.sh
source docs/bench/memory_targets.sh
memory_targets 230
source docs/bench/starts.sh
[ $SECONDS -lt 400 ] && starts 1 5 100 || echo "starts 1-5 skipped at ${SECONDS} s"
[ $SECONDS -lt 480 ] && starts 6 10 100 || echo "starts 6-10 skipped at ${SECONDS} s"
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
