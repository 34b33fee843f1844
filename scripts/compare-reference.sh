#!/usr/bin/env bash
# Side by side: the Python reference (ctgan 0.12.1, PyTorch) and synthgen, CTGAN and TVAE, on
# the same 80 % training split of Adult, with the same hyperparameters (both use their
# defaults, which match) and epoch count, alternating runs.
#
#   scripts/compare-reference.sh [EPOCHS] [ROUNDS]        # defaults: 10 epochs, 2 rounds
#
# Prints, per model: encoder fit seconds, seconds per epoch, seconds to sample 50,000 rows
# (each the best round), peak memory (MiB, the largest) and SDMetrics quality on the held-out
# 20 % (the mean over rounds), and the synthgen / reference ratio. Run it on an otherwise idle
# machine: a build or another job beside it changes the timings many times over. The
# reference's virtual environment lives in $SYNTHGEN_REFERENCE_VENV (default
# ~/.cache/synthgen/reference-venv) and is created on the first run (pip install ctgan==0.12.1
# sdmetrics==0.32.0, which brings PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-10}
ROUNDS=${2:-2}
VENV=${SYNTHGEN_REFERENCE_VENV:-$HOME/.cache/synthgen/reference-venv}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/synthgen/target}"
BIN="$CARGO_TARGET_DIR/release"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import ctgan, sdmetrics" 2>/dev/null; then
  echo "setting up $VENV (ctgan 0.12.1, sdmetrics 0.32.0, PyTorch)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q ctgan==0.12.1 sdmetrics==0.32.0
fi
cargo build --release --bins -q

OUT=$(mktemp -d "${TMPDIR:-/tmp}/synthgen-reference.XXXXXX")
python3 scripts/quality.py split data/adult.csv "$OUT" >&2
echo "work directory: $OUT" >&2
uptime >&2

for model in ctgan tvae; do
  for round in $(seq 1 "$ROUNDS"); do
    # The reference.
    dir="$OUT/ref-$model-$round"
    mkdir -p "$dir"
    /usr/bin/time -f %M -o "$dir/rss" \
      "$VENV/bin/python" scripts/reference.py "$model" "$OUT/train.csv" "$EPOCHS" "$dir" \
      > "$dir/result.json" 2> "$dir/log"

    # synthgen, same split, same epochs.
    dir="$OUT/syn-$model-$round"
    mkdir -p "$dir"
    cat > "$dir/config.toml" <<EOF
[data]
path = "$OUT/train.csv"
[model]
kind = "$model"
[train]
epochs = $EPOCHS
checkpoint_every = $EPOCHS
seed = $round
device = "cpu"
EOF
    RUST_LOG=info /usr/bin/time -f %M -o "$dir/rss" \
      "$BIN/train" --config "$dir/config.toml" --models-dir "$OUT/models" --run-id "$model-$round" \
      > /dev/null 2> "$dir/train.log" || { cat "$dir/train.log" >&2; exit 1; }
    RUST_LOG=info "$BIN/sample" --checkpoint "$OUT/models/$model-$round" -n 50000 --seed 1 \
      -o "$dir/synthetic.csv" 2> "$dir/sample.log"
    echo "$model round $round done" >&2
  done
done

"$VENV/bin/python" - "$OUT" "$EPOCHS" "$ROUNDS" <<'PY'
import csv, glob, json, os, re, statistics, subprocess, sys

out, epochs, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
python = sys.executable


def quality(real, synthetic):
    text = subprocess.run([python, "scripts/quality.py", "score", real, synthetic],
                          capture_output=True, text=True, check=True).stdout
    return float(text.strip().splitlines()[-1].split()[1])


def log_seconds(path, message):
    for line in open(path):
        if message in line:
            return float(re.search(r"seconds=([0-9.e-]+)", line).group(1))
    raise SystemExit(f"no '{message}' in {path}")


rows = {}
for model in ("ctgan", "tvae"):
    ref, syn = [], []
    for r in range(1, rounds + 1):
        d = f"{out}/ref-{model}-{r}"
        j = json.loads(open(f"{d}/result.json").read().strip().splitlines()[-1])
        ref.append({
            "encoder fit (s)": j["encoder_fit_s"],
            "s / epoch": j["seconds_per_epoch"],
            "sample 50,000 rows (s)": j["sample_50k_s"],
            "peak memory (MiB)": int(open(f"{d}/rss").read().split()[-1]) / 1024,
            "quality (SDMetrics)": quality(f"{out}/holdout.csv", f"{d}/synthetic.csv"),
        })
        d = f"{out}/syn-{model}-{r}"
        with open(f"{out}/models/{model}-{r}/metrics.csv") as f:
            per_epoch = [float(row["seconds"]) for row in csv.DictReader(f)]
        syn.append({
            "encoder fit (s)": log_seconds(f"{d}/train.log", "encoder fitted"),
            "s / epoch": statistics.mean(per_epoch),
            "sample 50,000 rows (s)": log_seconds(f"{d}/sample.log", "sampled"),
            "peak memory (MiB)": int(open(f"{d}/rss").read().split()[-1]) / 1024,
            "quality (SDMetrics)": quality(f"{out}/holdout.csv", f"{d}/synthetic.csv"),
        })
    rows[model] = (ref, syn)

# Times: the best round (a disturbed round only ever slows a run down); memory: the largest;
# quality: the mean.
def summary(key, values):
    if key.endswith("(s)") or key == "s / epoch":
        return min(values)
    if key.startswith("peak memory"):
        return max(values)
    return statistics.mean(values)


print(f"Adult, 80 % train split ({epochs} epochs, {rounds} rounds alternating;"
      " times: best round, memory: largest, quality: mean)")
print(f"{'':8} {'measure':24} {'reference':>10} {'synthgen':>10} {'ratio':>8}")
for model, (ref, syn) in rows.items():
    for key in ref[0]:
        a = summary(key, [x[key] for x in ref])
        b = summary(key, [x[key] for x in syn])
        ratio = "" if key.startswith("quality") else f"{b / a:8.3f}"
        diff = f"{b - a:+8.4f}" if key.startswith("quality") else ratio
        print(f"{model:8} {key:24} {a:10.4f} {b:10.4f} {diff:>8}")
PY
uptime >&2
