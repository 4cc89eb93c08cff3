#!/usr/bin/env bash
# Formatting and lint checks (ruff; settings in ruff.toml) over projects/, tools/ and tests/.
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    cat <<'USAGE'
usage: tools/lint.sh

Checks, without changing a file, that projects/ tools/ tests/ are formatted as `ruff format` writes
them and that `ruff check` (pyflakes F, import order I; ruff.toml) finds nothing. Exit 1 when either
fails. To fix: python -m ruff format projects tools tests && python -m ruff check --fix projects tools tests
Needs ruff (the dev extra: pip install -e '.[dev]'). Environment: PYTHON (default python3).
USAGE
    exit 0
fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
status=0
"$PY" -m ruff format --check projects tools tests || status=1
"$PY" -m ruff check projects tools tests || status=1
exit "$status"
