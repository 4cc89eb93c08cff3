"""Train: python tools/train.py CONFIG [--work-dir D] [--deepspeed deepspeed_zero2|none]
[--resume [PATH]] [--cfg-options k=v ...] [--launcher none|pytorch|slurm]."""
import sys
from pathlib import Path

# Run from a checkout without installing: make `projects` (and `tests` for toy configs) importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# Imported under the guard, not at the top: data-loader workers (fork-server/spawn) re-import
# this file as __mp_main__, and a top-level import of the engine made each of them import
# torch, mmengine.runner and DeepSpeed again (12 workers: no first step within 60 s).
if __name__ == '__main__':
    from projects.sa2va_vessel.engine.launch import main

    main()
