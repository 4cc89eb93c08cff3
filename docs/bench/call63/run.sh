#!/usr/bin/env bash
# Device call 63 (written for call 62's machine, held; it ran on a fresh one): the b8 ratios with CUDA graphs. Calls 60 and 61 lost
# them: on a fresh machine the first process compiles cold twice (the run's first iteration took
# 123.6 s in call 61, then the `fast` model step compiles its own shapes), past 240 and 330 s. Here
# the run and its model steps have 420 s (what device time was left); the run again without the
# model step comes after it if time is left (its figure against the first shows the spread between
# processes).
set -uo pipefail
CALL=call63
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks_63.csv 2>&1 &
E="$B --preset sa2va-internvl3-2b --batch-size 8 --stacks --e2e-steps 10,20,3"
run 420 b8_cuda_graphs_ratios $E
[ $SECONDS -lt 470 ] && run 110 b8_cuda_graphs_again $E --no-model-step || echo "b8_cuda_graphs_again skipped at ${SECONDS} s"
grep -h "host per step\|x plain" $L/b8_cuda_graphs_*.log
grep -ah "slow iteration\|pending, uninvoked" $L/b8_cuda_graphs_*.log | cut -c1-160
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
