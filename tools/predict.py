"""Predict: python tools/predict.py CHECKPOINT_OR_EXPORT INPUT_DIR OUT_DIR [--threshold T]
[--config CONFIG] [--window 1024] [--overlap 0.25] [--prob-format png16|npy]
[--mode teacher|generate] [--max-dynamic-patch N] [--device D] [--cfg-options k=v ...].
Video: python tools/predict.py CKPT FRAMES_DIR_OR_VIDEO OUT_DIR --video [--key-frames 5]
[--key-spacing first|even] [--no-memory] [--fps 8]: mask/, prob/, overlay.gif per sequence."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install


# Imported under the guard, not at the top: data-loader workers (fork-server/spawn) re-import
# this file as __mp_main__, and a top-level import of the engine made each of them import
# torch, mmengine.runner and DeepSpeed again (12 workers: no first step within 60 s).
if __name__ == '__main__':
    from projects.sa2va_vessel.evaluation.cli import predict_main

    predict_main()
