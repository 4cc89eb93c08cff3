"""Train: python tools/train.py CONFIG [--work-dir D] [--deepspeed deepspeed_zero2|none]
[--resume [PATH]] [--cfg-options k=v ...] [--launcher none|pytorch|slurm]."""
import sys
from pathlib import Path

# Run from a checkout without installing: make `projects` (and `tests` for toy configs) importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from projects.sa2va_vessel.engine.launch import main  # noqa: E402

if __name__ == '__main__':
    main()
