"""Train: python tools/train.py CONFIG [--work-dir D] [--deepspeed deepspeed_zero2|none]
[--resume [PATH]] [--cfg-options k=v ...] [--launcher none|pytorch|slurm]."""

import sys
from pathlib import Path

# The repository root on the path: `projects`, and `tests` for the toy configs of the test suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install


# Imported under the guard, not at the top: data-loader workers (fork-server/spawn) re-import
# this file as __mp_main__, and a top-level import of the engine made each of them import
# torch, mmengine.runner and DeepSpeed again (12 workers: no first step within 60 s).
if __name__ == '__main__':
    from projects.sa2va_vessel.engine.launch import main

    main()
