#!/usr/bin/env bash
# Device call 54, typed as one command on call 53's machine while it was warm (the session's last
# 244 s of device time): 2B at micro-batch 32 as shipped, with call 52's inductor cache on the machine.
CALL=call54; source docs/bench/device_lib.sh
ls /tmp/inductor >/dev/null 2>&1 && echo "inductor cache present: $(du -sh /tmp/inductor | cut -f1)"
run 215 b32_2b_shipped $B --preset sa2va-internvl3-2b --batch-size 32 --no-model-step --e2e-steps 6,10,2 --stacks
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs/b32_2b_shipped.json logs/b32_2b_shipped.log
