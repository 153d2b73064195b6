#!/usr/bin/env bash
# Sets everything up, lints and checks the format (ruff, configured in pyproject.toml)
# and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export RAY_DISABLE_USAGE_STATS=1
ruff check .
ruff format --check .
python -m pytest -q "$@"
