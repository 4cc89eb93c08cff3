#!/usr/bin/env bash
# Install sa2va-vessel and its pinned stack into the current Python (idempotent).
# torch goes first so that DeepSpeed's source build sees it; DS_BUILD_OPS=0 builds no CUDA ops
# (they compile just in time where needed).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    cat <<'USAGE'
usage: tools/setup.sh

Installs sa2va-vessel (editable, extras dev and qlora) and its pinned stack into the current
Python: torch first, then DeepSpeed built with DS_BUILD_OPS=0 (no CUDA ops). Safe to run again.
Environment: PYTHON (default python3).
USAGE
    exit 0
fi
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m pip install -q torch==2.13.0 setuptools wheel
DS_BUILD_OPS=0 "$PY" -m pip install -q --no-build-isolation -e ".[dev,qlora]"
