"""Train: python tools/train.py CONFIG [--work-dir D] [--deepspeed deepspeed_zero2|none]
[--resume [PATH]] [--cfg-options k=v ...] [--launcher none|pytorch|slurm]."""
import sys
from pathlib import Path

# The repository root on the path: `projects`, and `tests` for the toy configs of the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.engine.launch import main  # noqa: E402

if __name__ == '__main__':
    main()
