#!/usr/bin/env bash
# Set up (when needed) and run the whole test suite on the CPU.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    cat <<'USAGE'
usage: tools/run_tests.sh [pytest arguments]

Installs the pinned stack when needed (tools/setup.sh), then runs the whole test suite on the CPU
(what .ci/run runs): python -m pytest tests -q -n PYTEST_WORKERS --dist loadgroup [pytest arguments].
Environment: PYTHON (default python3), PYTEST_WORKERS (default 2; 0 runs in one process).
USAGE
    exit 0
fi
cd "$(dirname "$0")/.."
bash tools/setup.sh
PY=${PYTHON:-python3}
# two workers (pytest-xdist): the CI machine has two cores; PYTEST_WORKERS=0 runs in one process.
# loadgroup: a module marked xdist_group runs on one worker, so its module fixtures are built once.
exec "$PY" -m pytest tests -q -n "${PYTEST_WORKERS:-2}" --dist loadgroup "$@"
