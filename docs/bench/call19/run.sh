#!/usr/bin/env bash
# Device call 19: the shipped config (micro-batch 32, compiled, ZeRO-2) with 14 loader workers
# (call 18: 0.45 s of data wait per iteration with 8); the loader alone; ten consecutive starts
# of tools/train.py with 12 workers and the real tokenizer files (no tokenizer.json).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
run() { local t=$1 label=$2; shift 2; echo "=== $label: $*"; local s=$(date +%s)
  timeout -s ABRT -k 15 "$t" "$@" --label "$label" --out "$OUT/$label.json" > "$OUT/$label.log" 2>&1; local rc=$?
  echo "rc $rc wall $(( $(date +%s) - s )) s"; grep -E "samples/s|Error|Traceback" "$OUT/$label.log" | grep -v WARN | cut -c1-300 | tail -4; }
run 170 2b_b32_compiled_w14 $B --preset sa2va-internvl3-2b --no-model-step --e2e-steps 10,8,3 --workers 14
grep "Iter(train)" "$OUT/2b_b32_compiled_w14.log" | sed -E 's/loss:.*//' | cut -c60-170
echo "=== loader alone"
timeout 60 python3 tools/benchmark.py --dataload-only --dataload-workers 8,14 --dataload-sizes 512 --dataload-n 192 > "$OUT/dataload.log" 2>&1; echo "rc $?"; grep -iE "samples/s|workers" "$OUT/dataload.log" | tail -4
echo "=== ten starts: tools/train.py configs/vessel_lora.py, tiny preset on the GPU, 12 workers"
python3 -c "from pathlib import Path; from projects.sa2va_vessel.benchmark.end_to_end import prepare_inputs; prepare_inputs(Path('/tmp/w'), 'tiny', 512, 256, 4, Path('.carry/tok8b'))"
rm -rf /tmp/svcache; ls /tmp/w/inputs_tiny
for i in 1 2 3 4 5 6 7 8 9 10; do s=$(date +%s)
  timeout -s ABRT 60 python3 tools/train.py configs/vessel_lora.py --work-dir /tmp/starts/$i --cfg-options \
    model.model_path=preset:tiny model.device=cuda model.compile_llm_layers=False model.compile_frozen_encoders=False \
    train_dataloader.dataset.data_root=/tmp/w/synthetic_512 val_dataloader.dataset.data_root=/tmp/w/synthetic_512 \
    train_dataloader.dataset.model_path=/tmp/w/inputs_tiny val_dataloader.dataset.model_path=/tmp/w/inputs_tiny \
    train_dataloader.batch_size=8 train_dataloader.num_workers=12 train_cfg.max_iters=3 train_cfg.val_interval=100 \
    default_hooks.checkpoint.interval=100 default_hooks.checkpoint.save_last=False > "$OUT/start_$i.log" 2>&1
  rc=$?; echo "start $i: rc $rc, $(( $(date +%s) - s )) s, segfault lines: $(grep -c 'Unexpected segmentation fault' $OUT/start_$i.log), tokenizer conversions: $(grep -ciE 'convert.*tokenizer|tiktoken' $OUT/start_$i.log), first step checked: $(grep -c "every trainable group changed" $OUT/start_$i.log)"
  [ $rc -ne 0 ] && tail -5 "$OUT/start_$i.log" | cut -c1-300
done
ls /tmp/svcache
