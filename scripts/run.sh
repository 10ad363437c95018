#!/usr/bin/env bash
# Sets up .venv (first time only) and runs the bot. Settings come from the environment or ./.env.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ember run "$@"
