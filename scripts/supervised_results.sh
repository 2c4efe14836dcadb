#!/usr/bin/env bash
# The runs behind results/supervised/: MNIST full-space baselines and subspace runs at the paper's
# d_int90 (FC d = 750, LeNet d = 290), seeds 0-2, then CIFAR-10 FC (full and d = 9,000, seed 0).
# Budget: the configs' 5 epochs, batch 128, one CPU thread per run, one run at a time.
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
  .venv/bin/rlsub train "$@" --out "$out/$name" --quiet
}
for seed in 0 1 2; do
  run "mnist_fc_full_s$seed"    --config configs/supervised/mnist_fc.yaml --dim full --seed "$seed"
  run "mnist_fc_d750_s$seed"    --config configs/supervised/mnist_fc.yaml --dim 750 --seed "$seed"
  run "mnist_lenet_full_s$seed" --config configs/supervised/mnist_lenet.yaml --dim full --seed "$seed"
  run "mnist_lenet_d290_s$seed" --config configs/supervised/mnist_lenet.yaml --dim 290 --seed "$seed"
done
run cifar_fc_full_s0  --config configs/supervised/cifar_fc.yaml --dim full --seed 0
run cifar_fc_d9000_s0 --config configs/supervised/cifar_fc.yaml --dim 9000 --seed 0
.venv/bin/python scripts/supervised_report.py "$out"
