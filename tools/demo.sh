#!/usr/bin/env bash
# Set up (when needed) and run the demo: a tiny Sa2VA learns synthetic vessels on the CPU.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    cat <<'USAGE'
usage: tools/demo.sh [tools/demo.py options: --out DIR --iters N --samples N]

Installs the pinned stack when needed (tools/setup.sh), then runs tools/demo.py: a tiny random
Sa2VA learns synthetic vessels on the CPU, and the validation Dice before and after training is
printed (non-zero exit when it did not rise). tools/demo.py --help describes the options.
Environment: PYTHON (default python3).
USAGE
    exit 0
fi
cd "$(dirname "$0")/.."
bash tools/setup.sh
PY=${PYTHON:-python3}
exec "$PY" tools/demo.py "$@"
