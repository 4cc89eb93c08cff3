#!/usr/bin/env bash
# Device call 21: (A) ten consecutive starts of tools/train.py with 12 loader workers, the real
# tokenizer files (no tokenizer.json), beside (B) QLoRA (nf4 base) peak memory at 8B and 14B,
# micro-batch 1, capped at 24 GB. A and B run at the same time: neither reports a throughput here.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
L=/tmp/logs; mkdir -p $L
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "from pathlib import Path; from projects.sa2va_vessel.benchmark.end_to_end import prepare_inputs; prepare_inputs(Path('/tmp/w'), 'tiny', 256, 36, 4, Path('.carry/tok8b'))"
ls /tmp/w/inputs_tiny
starts() { for i in 1 2 3 4 5 6 7 8 9 10; do s=$(date +%s)
  timeout -s ABRT 90 python3 tools/train.py configs/vessel_lora.py --work-dir /tmp/starts/$i --cfg-options \
    model.model_path=preset:tiny model.device=cuda model.compile_llm_layers=False model.compile_frozen_encoders=False \
    train_dataloader.dataset.data_root=/tmp/w/synthetic_256 val_dataloader.dataset.data_root=/tmp/w/synthetic_256 \
    train_dataloader.dataset.model_path=/tmp/w/inputs_tiny val_dataloader.dataset.model_path=/tmp/w/inputs_tiny \
    train_dataloader.batch_size=8 train_dataloader.num_workers=12 train_cfg.max_iters=3 train_cfg.val_interval=100 \
    default_hooks.checkpoint.interval=100 default_hooks.checkpoint.save_last=False > "$L/start_$i.log" 2>&1
  rc=$?; echo "start $i: rc $rc, $(( $(date +%s) - s )) s, segfault lines: $(grep -c 'Unexpected segmentation fault' $L/start_$i.log), tokenizer conversions: $(grep -ciE 'tiktoken|converting' $L/start_$i.log), first step checked: $(grep -c 'every trainable group changed' $L/start_$i.log)"
  [ $rc -ne 0 ] && tail -4 "$L/start_$i.log" | cut -c1-300
done; ls /tmp/svcache; }
starts > $L/starts_summary.txt 2>&1 &
SP=$!
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/wq --no-model-step --config configs/vessel_lora_8b_24g.py --batch-size 1 --memory-cap-gib 24 --e2e-steps 5,10,4 --cfg-options model.quantize_base=nf4"
for p in sa2va-internvl3-8b sa2va-internvl3-14b; do s=$(date +%s); echo "=== qlora $p"
  timeout -s ABRT 260 $B --preset $p --label qlora_$p --out $L/qlora_$p.json > $L/qlora_$p.log 2>&1
  echo "rc $? wall $(( $(date +%s) - s )) s"; grep -E "samples/s|peak|GiB|Error|Traceback" $L/qlora_$p.log | grep -v WARN | cut -c1-300 | tail -6
done
wait $SP; cat $L/starts_summary.txt
tar czf $OUT/call21_logs.tar.gz -C /tmp logs
