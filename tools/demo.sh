#!/usr/bin/env bash
# Set up (when needed) and run the demo: a tiny Sa2VA learns synthetic vessels on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
PY=${PYTHON:-python3}
exec "$PY" tools/demo.py "$@"
