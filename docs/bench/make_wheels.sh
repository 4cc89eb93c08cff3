#!/usr/bin/env bash
# Builds .whl/, the wheels every device script installs (docs/bench/device_lib.sh), and .carry/tok8b,
# the real tokenizer files without tokenizer.json. Run once per checkout, from the repository root,
# after tools/setup.sh (deepspeed's wheel is built here with the installed torch). The device has
# torch 2.11 (cu130) and transformers 5.x, and no bitsandbytes, tensorboard, mmengine, peft or
# pydantic (which deepspeed imports; call 49 found it missing).
# bitsandbytes' wheel (43 MB) is repacked with only the CUDA 13.0 library (about 5 MB), so the
# wheels and the tokenizer stay well inside one call's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
grep -qx '/.carry/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.carry/' >> .git/info/exclude; }
mkdir -p .whl
P="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $P -d .whl \
  transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2 peft==0.21.2 mmengine==0.10.7 addict==2.4.0 \
  yapf==0.43.0 platformdirs==4.14.9 termcolor==3.3.0 hjson==3.1.0 py-cpuinfo==9.0.0 pycocotools==2.0.11 \
  tensorboard==2.21.0 absl-py==2.5.1 six==1.17.0 pydantic==2.13.4 pydantic_core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
ls .whl/deepspeed-0.19.6-*.whl > /dev/null 2>&1 || DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.6
if ! ls .whl/bitsandbytes-*.whl > /dev/null 2>&1; then
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $P -d "$tmp" bitsandbytes==0.50.2
  (cd "$tmp" && mkdir x && cd x && unzip -q ../bitsandbytes-*.whl \
    && find bitsandbytes -name 'libbitsandbytes_*.so' ! -name 'libbitsandbytes_cuda130.so' ! -name 'libbitsandbytes_cpu.so' -delete \
    && python3 - <<'PY'
import glob, os
record = glob.glob('bitsandbytes-*.dist-info/RECORD')[0]
lines = [l for l in open(record) if os.path.exists(l.split(',')[0])]  # drop the deleted libraries
open(record, 'w').writelines(lines)
PY
    zip -q -r "$repo/.whl/$(basename "$tmp"/bitsandbytes-*.whl)" .)
  rm -rf "$tmp"
fi
mkdir -p .carry/tok8b
cp ../shared/fixtures/sa2va_internvl3_8b_layout/{added_tokens.json,chat_template.jinja,merges.txt,special_tokens_map.json,tokenizer_config.json,vocab.json} .carry/tok8b/
du -sh .whl .carry
