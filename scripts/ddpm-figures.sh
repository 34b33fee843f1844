#!/usr/bin/env bash
# The DDPM figures of the README: training images per second at the default config
# (configs/ddpm-mnist.toml, on the first LIMIT images), seconds to sample 64 images with 50 DDIM
# steps and with the full 1,000 DDPM steps, and evaluate --images on the DDIM samples (after one
# epoch: a measure of the pipeline, not of a trained model).
#   scripts/ddpm-figures.sh [DEVICE] [LIMIT]        DEVICE: cpu (default) | wgpu | cuda
# Run it on an otherwise idle machine. Set SKIP_DDPM=1 to skip the 1,000-step sampling.
set -euo pipefail
cd "$(dirname "$0")/.."
device="${1:-cpu}"
limit="${2:-640}"
features=""
[ "$device" = cuda ] && features="--features cuda"
cargo build --release $features --bins -q
bin="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed -e "s|^# limit = 10000|limit = $limit|" -e 's|^epochs = 20|epochs = 1|' configs/ddpm-mnist.toml > "$work/c.toml"
export SYNTHGEN_MODELS_DIR="$work/models"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)   device: $device   images: $limit"
t0=$(date +%s.%N)
"$bin"/train --config "$work/c.toml" --device "$device" --run-id f --seed 1 -q >/dev/null
t1=$(date +%s.%N)
secs=$(tail -1 "$work/models/f/metrics.csv" | awk -F, '{print $NF}')
echo "train: 1 epoch of $limit images in ${secs} s = $(echo "$limit / $secs" | bc -l | cut -c1-6) images/s (whole command $(echo "$t1 - $t0" | bc | cut -c1-6) s)"
time_it() { local s=$(date +%s.%N); "$@"; echo "$(echo "$(date +%s.%N) - $s" | bc | cut -c1-7)"; }
ddim=$(time_it "$bin"/sample --checkpoint f -n 64 --steps 50 --seed 1 --device "$device" -o "$work/ddim" -q)
echo "sample: 64 images, 50 DDIM steps: ${ddim} s"
if [ -z "${SKIP_DDPM:-}" ]; then
  ddpm=$(time_it "$bin"/sample --checkpoint f -n 64 --seed 1 --device "$device" -o "$work/ddpm" -q)
  echo "sample: 64 images, 1000 DDPM steps: ${ddpm} s"
fi
"$bin"/evaluate --images --classifier mnist --real data/mnist/t10k-images-idx3-ubyte.gz --synthetic "$work/ddim" --device "$device"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
