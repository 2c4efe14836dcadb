#!/usr/bin/env bash
# Short ES runs of Humanoid-v4 (d = 700, D = 166,673) and Pong (d = 6,000, D = 1,005,974) under
# `mpirun -n 2`, to show the pipeline and record reward curves on a small machine. The budgets are
# set here and recorded in each run's config.json: far below what the paper's results need (see
# scripts/es_at_scale.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
out=results/es/short_runs
mkdir -p "$out"
rm -rf "$out/humanoid_v4_d700" "$out/pong_d6000"
mpirun -n 2 rlsub es --config configs/es/humanoid_v4.yaml --dim 700 --pairs 20 --generations 20 \
  --out "$out/humanoid_v4_d700" --quiet
mpirun -n 2 rlsub es --config configs/es/pong.yaml --dim 6000 --pairs 4 --generations 4 \
  --out "$out/pong_d6000" --quiet
rm -f "$out"/*/checkpoint.npz
.venv/bin/python scripts/plot_curves.py "$out" --key return_mean --out "$out/reward_curves.png"
.venv/bin/python scripts/runs_table.py "$out" --title "ES short runs under mpirun -n 2" > "$out/README.md"
