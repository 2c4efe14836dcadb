#!/usr/bin/env bash
# ES on CartPole-v1 at d = 4 (configs/es/cartpole.yaml), seeds 0-4, one rank each; then the table.
# Writes results/es/cartpole_d4/seed<N>/ and results/es/cartpole_d4/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/es/cartpole_d4
for seed in 0 1 2 3 4; do
  rm -rf "$out/seed$seed"
  .venv/bin/rlsub es --config configs/es/cartpole.yaml --dim 4 --seed "$seed" --out "$out/seed$seed" --quiet
  rm -f "$out/seed$seed/checkpoint.npz"
done
.venv/bin/python scripts/runs_table.py "$out" --title "ES, CartPole-v1, d = 4" > "$out/README.md"
