#!/usr/bin/env bash
# Set up (when needed) and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
PY=${PYTHON:-python3}
# two workers (pytest-xdist): the CI machine has two cores; PYTEST_WORKERS=0 runs in one process
exec "$PY" -m pytest tests -q -n "${PYTEST_WORKERS:-2}" "$@"
