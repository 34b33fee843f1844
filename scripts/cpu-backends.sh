#!/usr/bin/env bash
# The CPU backend choice, measured: CTGAN and TVAE seconds per epoch on Adult with Burn's flex
# backend (the default) and the deprecated ndarray backend, alternating, same seed.
#
#   scripts/cpu-backends.sh [EPOCHS] [ROUNDS]        # defaults: 3 epochs, 2 rounds
#
# Needs a build with the `ndarray` feature (`cargo build --release --features ndarray`; a
# different feature set, so the first build recompiles much of Burn: 36 minutes on 2 cores).
# That build runs flex by default and ndarray with SYNTHGEN_CPU_BACKEND=ndarray. The first
# epoch of each run is left out of the mean. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-3}
ROUNDS=${2:-2}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/synthgen/target}"
cargo build --release --bin train --features ndarray -q
BIN="$CARGO_TARGET_DIR/release/train"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)  cores: $(nproc)"
for model in ctgan tvae; do
  for round in $(seq 1 "$ROUNDS"); do
    for backend in flex ndarray; do
      id="$model-$backend-$round"
      SYNTHGEN_CPU_BACKEND=$backend "$BIN" --config "configs/$model.toml" --epochs "$EPOCHS" \
        --device cpu --seed 1 --models-dir "$work" --run-id "$id" -q > /dev/null
      awk -F, -v id="$id" 'NR > 2 { s += $NF; n++ } END { printf "%s %.3f\n", id, s / n }' \
        "$work/$id/metrics.csv" >> "$work/results"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk '{ split($1, p, "-"); key = p[1] " " p[2]; s[key] += $2; n[key]++ }
  END {
    printf "%-6s %10s %10s %8s\n", "model", "flex s/ep", "ndarray", "ratio"
    for (m in s) { split(m, q, " "); models[q[1]] = 1 }
    for (m in models) {
      f = s[m " flex"] / n[m " flex"]; d = s[m " ndarray"] / n[m " ndarray"]
      printf "%-6s %10.3f %10.3f %8.2f\n", m, f, d, d / f
    }
  }' "$work/results"
