#!/usr/bin/env bash
# Device call 20 (the session's last seconds): consecutive starts of tools/train.py with 12 loader
# workers after the fix (tools import the engine under the __main__ guard; open-file limit raised).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache
python3 -c "from pathlib import Path; from projects.sa2va_vessel.benchmark.end_to_end import prepare_inputs; prepare_inputs(Path('/tmp/w'), 'tiny', 256, 36, 4, Path('.carry/tok8b'))"
for i in 1 2 3 4 5 6 7 8 9 10; do s=$(date +%s)
  timeout 45 python3 tools/train.py configs/vessel_lora.py --work-dir /tmp/starts/$i --cfg-options \
    model.model_path=preset:tiny model.device=cuda model.compile_llm_layers=False model.compile_frozen_encoders=False \
    train_dataloader.dataset.data_root=/tmp/w/synthetic_256 val_dataloader.dataset.data_root=/tmp/w/synthetic_256 \
    train_dataloader.dataset.model_path=/tmp/w/inputs_tiny val_dataloader.dataset.model_path=/tmp/w/inputs_tiny \
    train_dataloader.batch_size=8 train_dataloader.num_workers=12 train_cfg.max_iters=3 train_cfg.val_interval=100 \
    default_hooks.checkpoint.interval=100 default_hooks.checkpoint.save_last=False > "$OUT/start_$i.log" 2>&1
  rc=$?; echo "start $i: rc $rc, $(( $(date +%s) - s )) s, segfault lines: $(grep -c 'Unexpected segmentation fault' $OUT/start_$i.log), first step checked: $(grep -c 'every trainable group changed' $OUT/start_$i.log)"
done
