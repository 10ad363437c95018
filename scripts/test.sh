#!/usr/bin/env bash
# Sets up .venv with the dev tools and runs every check CI runs: lint, types, Dockerfile lint, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check .
mypy
hadolint Dockerfile
python -m pytest "$@"
