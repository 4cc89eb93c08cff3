"""Evaluate: python tools/test.py CONFIG CHECKPOINT [--split val|test] [--out DIR]
[--mode teacher|generate|both] [--threshold T] [--max-new-tokens N] [--num-overlays K]
[--device D] [--cfg-options k=v ...] [--video [--key-frames 5] [--key-spacing first|even] [--no-memory]].
CHECKPOINT: a training checkpoint (.pth file or DeepSpeed
directory) or an exported official-layout model directory."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from projects.sa2va_vessel.evaluation.cli import test_main  # noqa: E402

if __name__ == '__main__':
    test_main()
