#!/usr/bin/env bash
# The DQN experiments behind results/dqn/: a short Pong run under the subspace policy (CartPole-v1
# is measured by `mpirun -n 2 rlsub sweep --config configs/sweeps/cartpole_dqn.yaml`). One run at a time (CPU is
# scarce). Each run directory is copied to results/dqn/<run>/ without large files, then the
# tables are rebuilt by scripts/dqn_report.py.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=runs/dqn
keep() {  # copy a run's small files into results/dqn/<run>/
  local run=$1
  mkdir -p "results/dqn/$run"
  find "$RUNS/$run" -maxdepth 1 -type f -size -1024k -exec cp {} "results/dqn/$run/" \;
}
if [ "${1:-}" != "--no-pong" ]; then
  run=pong_d6000_s0_short
  .venv/bin/rlsub dqn --config configs/dqn/pong.yaml --dim 6000 --seed 0 --timesteps 6000 --eval-episodes 1 \
    --set dqn.learning_starts=1000 --set eval_every=0 --set log_every=500 --out "$RUNS/$run"
  keep "$run"
fi
.venv/bin/python scripts/dqn_report.py
