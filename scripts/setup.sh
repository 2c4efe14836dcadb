#!/usr/bin/env bash
# One-command set-up: creates .venv and installs rlsub with its test tools.
# torch is pinned to 2.13.0, the CPU build; see pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -c "import rlsub, rlsub._fwht, rlsub._step; print('rlsub', rlsub.__version__, 'installed in .venv')"
