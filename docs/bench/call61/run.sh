#!/usr/bin/env bash
# Device call 61 (fresh machine; carry [".whl", ".carry"]): call 60 again, now that every training
# loss marks its step for the CUDA-graph trees (call 60 warned of "pending, uninvoked backwards",
# and its first process ran out of its 240 s in the `fast` model step, so it gave no ratio). The
# first process: the b8 run as shipped (CUDA graphs over the compiled layers), then the plain and
# `fast` model steps (fast with the graphs too: the switches its config turns on); the second the
# same without the graphs; a third the shipped run again, if time is left.
set -uo pipefail
CALL=call61
source docs/bench/device_lib.sh
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -l 2 > $L/gpu_clocks.csv 2>&1 &
(lscpu; nproc; cat /proc/loadavg) > $L/host_cpu.txt 2>&1
grep -E "^(Model name|Thread|Core|Socket|NUMA node)" $L/host_cpu.txt
E="$B --preset sa2va-internvl3-2b --batch-size 8 --stacks --e2e-steps 10,20,3"
OFF="--cfg-options model.cuda_graph_llm_layers=False"
run 330 b8_cuda_graphs_shipped $E --sync-audit
grep -a "built\|samples/s" $L/b8_cuda_graphs_shipped.log | cut -c1-200 | tail -8
run 200 b8_no_cuda_graphs $E $OFF
[ $SECONDS -lt 470 ] && run 110 b8_cuda_graphs_again $E --no-model-step || echo "b8_cuda_graphs_again skipped at ${SECONDS} s"
grep -h "host per step\|x plain" $L/*.log
grep -ah "cudagraph\|CUDAGraph" $L/*.log | cut -c1-200 | sort | uniq -c | sort -rn | head -8
kill %1 2>/dev/null
tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs
echo "done at ${SECONDS} s"
