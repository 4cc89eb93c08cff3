# Sourced by the device scripts that come after call 26 (the scripts of calls that ran stay as they ran):
# installs the carried wheels and defines run TIMEOUT LABEL CMD..., which logs, prints the figures and
# packs the logs into $OUT/$CALL_logs.tar.gz after each run, so what ran comes back if the call runs out.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 SA2VA_VESSEL_CACHE=/tmp/svcache PYTHONFAULTHANDLER=1
# from call 42 on: dynamo names each recompile and the guard that failed (calls 39-41 lost runs to
# compiles that nothing named; the end-to-end hook also logs every slow or compiling iteration)
export TORCH_LOGS=recompiles
L=/tmp/logs; mkdir -p $L
B="python3 tools/benchmark.py --end-to-end --tokenizer .carry/tok8b --work-dir /tmp/w"
run() { local t=$1 label=$2; shift 2; echo "=== $label (at ${SECONDS} s): $*"; local s=$(date +%s)
  timeout -s ABRT -k 15 "$t" "$@" --label "$label" --out "$L/$label.json" > "$L/$label.log" 2>&1; local rc=$?
  echo "rc $rc wall $(( $(date +%s) - s )) s"; grep -E "samples/s|x plain|Error|Traceback" "$L/$label.log" | grep -v WARN | cut -c1-320 | tail -6
  grep "Iter(train)" "$L/$label.log" | sed -E 's/loss:.*//' | cut -c60-170 | tail -3
  tar czf "$OUT/${CALL}_logs.tar.gz" -C /tmp logs; }
# The inductor/Triton cache (from call 36 on): a cold machine spends 100-190 s compiling the first
# step (calls 33-35). A cache saved by save_inductor_cache into $OUT (when it fits in 15 MiB, the
# limit of one returned file) can travel to the next call as .carry/inductor.tgz.
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
# From call 42 on a cache over one file's limit comes back in 15 MiB parts (inductor.tgz.part-aa, ...),
# carried as .carry/inductor.tgz.part-* and joined here.
if [ ! -d /tmp/inductor ]; then
  if [ -f .carry/inductor.tgz ]; then tar xzf .carry/inductor.tgz -C /tmp
  elif ls .carry/inductor.tgz.part-* > /dev/null 2>&1; then cat .carry/inductor.tgz.part-* | tar xz -C /tmp; fi
  [ -d /tmp/inductor ] && echo "inductor cache restored: $(du -sh /tmp/inductor | cut -f1)"; fi
save_inductor_cache() { tar czf /tmp/inductor.tgz -C /tmp inductor; local kb=$(du -k /tmp/inductor.tgz | cut -f1)
  echo "inductor cache: ${kb} KiB compressed"; rm -f "$OUT"/inductor.tgz*
  if [ "$kb" -le 16000 ]; then cp /tmp/inductor.tgz "$OUT/inductor.tgz"
  elif [ "$kb" -le 45000 ]; then split -b 15M /tmp/inductor.tgz "$OUT/inductor.tgz.part-"
  else echo "inductor cache not returned: over 45000 KiB"; fi; }
