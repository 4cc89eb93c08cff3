#!/usr/bin/env bash
# Device call 24 (call 23 corrected: model.vocab_size matches the tokenizer the data set reads): ten consecutive starts of tools/train.py configs/vessel_lora.py with 12 loader
# workers and the real tokenizer files (vocab.json + merges.txt, no tokenizer.json, cache empty);
# then one end-to-end figure per Qwen-VL family at micro-batch 8 (ZeRO-2, compile off).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
L=/tmp/logs; mkdir -p $L
python3 -c "from pathlib import Path; from projects.sa2va_vessel.benchmark.end_to_end import prepare_inputs; prepare_inputs(Path('/tmp/w'), 'tiny', 256, 36, 4, Path('.carry/tok8b'))"
rm -rf /tmp/svcache
for i in 1 2 3 4 5 6 7 8 9 10; do s=$(date +%s)
  timeout -s ABRT 75 python3 tools/train.py configs/vessel_lora.py --work-dir /tmp/starts/$i --max-iters 3 --cfg-options \
    model.model_path=preset:tiny model.vocab_size=151679 model.device=cuda model.compile_llm_layers=False model.compile_frozen_encoders=False \
    train_dataloader.dataset.data_root=/tmp/w/synthetic_256 val_dataloader.dataset.data_root=/tmp/w/synthetic_256 \
    train_dataloader.dataset.model_path=/tmp/w/inputs_tiny val_dataloader.dataset.model_path=/tmp/w/inputs_tiny \
    train_dataloader.batch_size=8 train_dataloader.num_workers=12 train_cfg.val_interval=100 \
    default_hooks.checkpoint.interval=100 default_hooks.checkpoint.save_last=False > "$L/start_$i.log" 2>&1
  rc=$?; echo "start $i: rc $rc, $(( $(date +%s) - s )) s, segfault lines: $(grep -c 'Unexpected segmentation fault' $L/start_$i.log), tokenizer conversions: $(grep -ciE 'tiktoken|converting' $L/start_$i.log), first step checked: $(grep -c 'every trainable group changed' $L/start_$i.log)"
  [ $rc -ne 0 ] && tail -4 "$L/start_$i.log" | cut -c1-300
done
ls /tmp/svcache
tar czf $OUT/call24_starts.tar.gz -C /tmp logs
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w --no-model-step --batch-size 8 --e2e-steps 4,8,2 --no-compile --cfg-options model.compile_llm_layers=False model.compile_frozen_encoders=False"
for p in sa2va-qwen25vl-3b sa2va-qwen3vl-4b; do s=$(date +%s); echo "=== $p (at ${SECONDS} s)"
  [ $SECONDS -gt 420 ] && { echo "skipped: the call would run out"; continue; }
  timeout -s ABRT 150 $B --preset $p --label $p --out $L/$p.json > $L/$p.log 2>&1
  echo "rc $? wall $(( $(date +%s) - s )) s"; grep -E "samples/s|Error|Traceback" $L/$p.log | grep -v WARN | cut -c1-320 | tail -4
done
tar czf $OUT/call24_logs.tar.gz -C /tmp logs
