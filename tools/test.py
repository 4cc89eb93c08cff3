"""Evaluate: python tools/test.py CONFIG CHECKPOINT [--split val|test] [--out DIR]
[--mode teacher|generate|both] [--threshold T] [--max-new-tokens N] [--num-overlays K]
[--allow-test-sweep] [--n-boot 2000] [--seed 0] [--device D] [--cfg-options k=v ...]
[--video [--key-frames 5] [--key-spacing first|even] [--no-memory]].
CHECKPOINT: a training checkpoint (.pth file or DeepSpeed directory) or an exported
official-layout model directory. Writes <out>/<mode>/results_<dataset>_<split>.{csv,md}
(mean +- sd and bootstrap 95% CI per metric, the split protocol named). On a test split the
threshold sweep is refused unless --allow-test-sweep (then labelled *_optimistic)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install


# Imported under the guard, not at the top: data-loader workers (fork-server/spawn) re-import
# this file as __mp_main__, and a top-level import of the engine made each of them import
# torch, mmengine.runner and DeepSpeed again (12 workers: no first step within 60 s).
if __name__ == '__main__':
    from projects.sa2va_vessel.evaluation.cli import test_main

    test_main()
