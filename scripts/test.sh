#!/usr/bin/env bash
# Sets everything up, lints and checks the format (ruff, configured in pyproject.toml),
# type-checks the pipeline and the loaders (mypy, strict) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export RAY_DISABLE_USAGE_STATS=1
ruff check .
ruff format --check .
bash scripts/typecheck.sh
python -m pytest -q "$@"
