#!/usr/bin/env bash
# Set up (when needed) and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
PY=${PYTHON:-python3}
exec "$PY" -m pytest tests -q "$@"
