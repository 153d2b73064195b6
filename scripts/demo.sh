#!/usr/bin/env bash
# Sets everything up, runs conf/demo.yaml on the bundled sample data on the embedded local Ray,
# and prints the per-stage funnel.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export RAY_DISABLE_USAGE_STATS=1
refinery run conf/demo.yaml --out runs/demo --runner ray
refinery stats runs/demo
