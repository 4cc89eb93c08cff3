"""Predict: python tools/predict.py CHECKPOINT_OR_EXPORT INPUT_DIR OUT_DIR [--threshold T]
[--config CONFIG] [--window 1024] [--overlap 0.25] [--prob-format png16|npy]
[--mode teacher|generate] [--max-dynamic-patch N] [--device D] [--cfg-options k=v ...].
Video: python tools/predict.py CKPT FRAMES_DIR_OR_VIDEO OUT_DIR --video [--key-frames 5]
[--key-spacing first|even] [--no-memory] [--fps 8]: mask/, prob/, overlay.gif per sequence."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.evaluation.cli import predict_main  # noqa: E402

if __name__ == '__main__':
    predict_main()
