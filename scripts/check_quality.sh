#!/usr/bin/env bash
# Lint and type checks, as CI runs them (configuration: [tool.ruff] and [tool.mypy] in pyproject.toml).
#   bash scripts/check_quality.sh         check only (non-zero exit on any finding)
#   bash scripts/check_quality.sh --fix   apply ruff's safe fixes and format first, then check
set -euo pipefail
cd "$(dirname "$0")/.."

paths=(src tests scripts benchmarks)
if [[ "${1:-}" == "--fix" ]]; then
    python -m ruff check --fix "${paths[@]}"
    python -m ruff format "${paths[@]}"
fi
status=0
echo "== ruff check"; python -m ruff check "${paths[@]}" || status=1
echo "== ruff format --check"; python -m ruff format --check "${paths[@]}" || status=1
echo "== mypy"; python -m mypy || status=1
exit $status
