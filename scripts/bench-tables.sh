#!/usr/bin/env bash
# Figures for tables on this machine: encoder fit and transform seconds, TVAE seconds per
# epoch at the defaults, seconds to sample 50,000 rows, and peak memory of `train`.
#
#   scripts/bench-tables.sh [EPOCHS] [DEVICE]      (defaults: 10 epochs, cpu)
#
# Time on an otherwise idle machine: the script prints the load average before it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-10}"
device="${2:-cpu}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/synthgen/target}"
cargo build --release --quiet --bin train --bin sample
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)  cores: $(nproc)"
# Peak resident memory of a command, in MiB, read from the kernel (VmHWM of the child).
peak() { python3 - "$@" <<'PY'
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
sys.stderr.write(p.stderr)
print(p.stdout, end="")
print(f"peak_rss_mib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}", file=sys.stderr)
sys.exit(p.returncode)
PY
}

RUST_LOG=info peak "$bin/train" --config configs/tvae.toml --epochs "$epochs" --device "$device" --seed 1 \
  --models-dir "$work" --run-id bench -q 2> "$work/train.log" > /dev/null
fit=$(grep -o 'encoder fitted seconds=[0-9.e-]*' "$work/train.log" | cut -d= -f2)
enc=$(grep -o 'data encoded seconds=[0-9.e-]*' "$work/train.log" | cut -d= -f2)
mem=$(grep -o 'peak_rss_mib=[0-9]*' "$work/train.log" | cut -d= -f2)
per_epoch=$(awk -F, 'NR > 1 { s += $NF; n++ } END { printf "%.3f", s / n }' "$work/bench/metrics.csv")
per_epoch_after_first=$(awk -F, 'NR > 2 { s += $NF; n++ } END { if (n) printf "%.3f", s / n; else print "n/a" }' "$work/bench/metrics.csv")

start=$(date +%s.%N)
RUST_LOG=info "$bin/sample" --checkpoint bench --models-dir "$work" -n 50000 -o "$work/s.csv" --seed 1 --device "$device" -q 2> "$work/sample.log"
end=$(date +%s.%N)
gen=$(grep -o 'sampled rows=50000 seconds=[0-9.e-]*' "$work/sample.log" | cut -d= -f3)

echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %s\n' "device" "$device"
printf '%-40s %s\n' "encoder fit (s)" "$fit"
printf '%-40s %s\n' "encoder transform (s)" "$enc"
printf '%-40s %s\n' "TVAE s/epoch, mean of $epochs" "$per_epoch"
printf '%-40s %s\n' "TVAE s/epoch, epochs 2..$epochs" "$per_epoch_after_first"
printf '%-40s %s\n' "sample 50,000 rows: generate (s)" "$gen"
printf '%-40s %s\n' "sample 50,000 rows: whole command (s)" "$(echo "$end - $start" | bc)"
printf '%-40s %s\n' "train peak RSS (MiB)" "$mem"
