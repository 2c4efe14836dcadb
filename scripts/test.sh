#!/usr/bin/env bash
# The test command. Default: the fast suite (a few minutes on 2 cores).
# --all: also the slow and MPI tests (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--all" ]; then
  shift
  exec .venv/bin/python -m pytest -m "" "$@"
fi
exec .venv/bin/python -m pytest "$@"
