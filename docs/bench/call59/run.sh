#!/usr/bin/env bash
# Device call 59 (written for the next session, not run yet; fresh machine, `bash docs/bench/make_wheels.sh`
# here first, carry [".whl", ".carry"]): why one b8 command spreads 30.4-50.3 samples/s across
# processes (calls 51-55). Four processes of the shipped b8 run, the first beside the model steps;
# each summary now carries the throughput window's iteration times (uniformly slow, or stalls) and
# the trainer's host time (`host`: main-thread CPU against wall, involuntary context switches,
# garbage collections; benchmark/host_clock.py). A slow process with the main thread busy ~1.0
# computes more or on a slower core; one well under 1.0 waits; many involuntary switches: its core
# was taken; gc time: the collector.
set -uo pipefail
CALL=call59
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks.csv 2>&1 &
(lscpu; nproc; cat /proc/loadavg) > $L/host_cpu.txt 2>&1
E="$B --preset sa2va-internvl3-2b --batch-size 8 --stacks --e2e-steps 10,20,3"
run 300 b8_shipped_then_model_step $E --sync-audit
for i in 2 3 4; do
  [ $SECONDS -lt 480 ] && run 110 b8_process_$i $E --no-model-step || echo "b8_process_$i skipped at ${SECONDS} s"
done
grep -h "host per step" $L/*.log
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
