#!/usr/bin/env bash
# Retrain the classifiers that `evaluate --images` ships in assets/ (compiled into the binary).
# Needs the full MNIST and Fashion-MNIST IDX files (default: ../shared/data). Run from anywhere:
#   scripts/train-classifiers.sh [DATA_ROOT] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-../shared/data}"
epochs="${2:-3}"
for set in mnist fashion-mnist; do
  cargo run --release --example train_classifier -- "$root/$set" "assets/classifier-$set.bpk" "$epochs"
done
