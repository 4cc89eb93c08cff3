# Sourced after device_lib.sh: starts FIRST LAST LIMIT runs starts FIRST..LAST of tools/train.py
# configs/vessel_lora.py at once, each with 12 loader workers (tiny preset, the real tokenizer files
# .carry/tok8b: vocab.json + merges.txt, no tokenizer.json; the tokenizer cache emptied before the
# first wave), and prints per start: exit status, seconds, worker segfault lines, tokenizer
# conversions, and whether the guard checked the first step. faulthandler is on (device_lib.sh).
python3 -c "from pathlib import Path; from projects.sa2va_vessel.benchmark.end_to_end import prepare_inputs; prepare_inputs(Path('/tmp/w'), 'tiny', 256, 36, 4, Path('.carry/tok8b'))"
starts() { local first=$1 last=$2 limit=$3 i; [ "$first" = 1 ] && rm -rf /tmp/svcache
  echo "=== starts $first-$last at once (at ${SECONDS} s)"; local s=$(date +%s)
  for i in $(seq "$first" "$last"); do
    ( timeout -s ABRT -k 10 "$limit" python3 tools/train.py configs/vessel_lora.py --work-dir /tmp/starts/$i --max-iters 3 --cfg-options \
      model.model_path=preset:tiny model.vocab_size=151679 model.device=cuda model.compile_llm_layers=False model.compile_frozen_encoders=False \
      train_dataloader.dataset.data_root=/tmp/w/synthetic_256 val_dataloader.dataset.data_root=/tmp/w/synthetic_256 \
      train_dataloader.dataset.model_path=/tmp/w/inputs_tiny val_dataloader.dataset.model_path=/tmp/w/inputs_tiny \
      train_dataloader.batch_size=8 train_dataloader.num_workers=12 train_cfg.val_interval=100 \
      default_hooks.checkpoint.interval=100 default_hooks.checkpoint.save_last=False > "$L/start_$i.log" 2>&1; echo $? > "$L/start_$i.rc" ) &
  done; wait
  for i in $(seq "$first" "$last"); do local f="$L/start_$i.log"
    echo "start $i: rc $(cat "$L/start_$i.rc"), segfault lines: $(grep -cE 'Unexpected segmentation fault|Fatal Python error' "$f"), tokenizer conversions: $(grep -ciE 'tiktoken|converting' "$f"), first step checked: $(grep -c 'every trainable group changed' "$f"), errors: $(grep -cE 'Traceback|Error' "$f")"
  done; echo "wave wall $(( $(date +%s) - s )) s"; tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs; }
