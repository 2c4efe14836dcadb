#!/usr/bin/env bash
# The MNIST runs behind results/supervised/: full-space baselines and subspace runs at the paper's
# d_int90 (FC d = 750, LeNet d = 290), 5 epochs each (the configs' budget), seed 0, one CPU thread.
# Runs go to runs/supervised_results/<name>; scripts/supervised_report.py then copies their small
# files into results/supervised/<name>/ and writes results/supervised/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export RLSUB_DATA="${RLSUB_DATA:-$(cd .. && pwd)/shared/data}"
out=runs/supervised_results
mkdir -p "$out"
run() {  # name, then rlsub train arguments
  local name=$1; shift
  if [ -f "$out/$name/summary.json" ]; then echo "$name: done already"; return; fi
  rm -rf "${out:?}/$name"
  .venv/bin/rlsub train "$@" --seed 0 --out "$out/$name" --quiet
}
run mnist_fc_full    --config configs/supervised/mnist_fc.yaml --dim full
run mnist_fc_d750    --config configs/supervised/mnist_fc.yaml --dim 750
run mnist_lenet_full --config configs/supervised/mnist_lenet.yaml --dim full
run mnist_lenet_d290 --config configs/supervised/mnist_lenet.yaml --dim 290
.venv/bin/python scripts/supervised_report.py "$out"
