#!/usr/bin/env bash
# Device call 60 (fresh machine; carry [".whl", ".carry"]): CUDA graphs over the compiled decoder
# layers (model.cuda_graph_llm_layers, now on in configs/vessel_lora.py) against the same run
# without them, at b8 where the step is bound by the host (call 51: each compiled LoRA layer
# spends 1.6 ms of host on 0.8 ms of kernels). Each process reports the b8 run, then the plain and
# `fast` model steps (fast with the switches the run's config turns on: CUDA graphs or not), and
# the host fields (main-thread CPU against wall, involuntary switches, gc).
set -uo pipefail
CALL=call60
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks.csv 2>&1 &
(lscpu; nproc; cat /proc/loadavg) > $L/host_cpu.txt 2>&1
grep -E "^(Model name|Thread|Core|Socket|NUMA node)" $L/host_cpu.txt
E="$B --preset sa2va-internvl3-2b --batch-size 8 --stacks --e2e-steps 10,20,3"
OFF="--cfg-options model.cuda_graph_llm_layers=False"
run 240 b8_cuda_graphs_shipped $E --sync-audit
run 200 b8_no_cuda_graphs $E $OFF
[ $SECONDS -lt 420 ] && run 150 b8_cuda_graphs_again $E --no-model-step || echo "b8_cuda_graphs_again skipped at ${SECONDS} s"
[ $SECONDS -lt 480 ] && run 100 b8_no_cuda_graphs_again $E $OFF --no-model-step || echo "b8_no_cuda_graphs_again skipped at ${SECONDS} s"
grep -h "host per step\|x plain" $L/*.log
grep -ah "cudagraph\|CUDAGraph" $L/*.log | sort | uniq -c | sort -rn | head -8
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
