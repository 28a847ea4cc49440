#!/usr/bin/env bash
# Throughput of a deep LSTM with and without pipeline parallelism: the same job (LAYERS LSTM layers
# of HIDDEN units after a projection, batch BATCH, window WINDOW) through `ringtrain local` on
# P = 1 worker and on P = 2 pipeline stages (MICRO micro-batches, SCHEDULE), one thread per worker
# process. Prints the samples/s each job measured itself (start-up excluded) and the speed-up.
#
#   cargo build --release -p ringtrain-cli
#   bash bench/pipeline_throughput.sh      # LAYERS=8 HIDDEN=512 STEPS=12 MICRO=8 ... to adjust
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${BIN:-}" ]; then
  BIN=target/release/ringtrain
  [ -x "$BIN" ] || BIN="${CARGO_TARGET_DIR:-target}/release/ringtrain"
fi
[ -x "$BIN" ] || { echo "missing $BIN: cargo build --release -p ringtrain-cli" >&2; exit 1; }
LAYERS=${LAYERS:-8}
HIDDEN=${HIDDEN:-512}
STEPS=${STEPS:-12}
BATCH=${BATCH:-32}
WINDOW=${WINDOW:-20}
MICRO=${MICRO:-8}
SCHEDULE=${SCHEDULE:-1f1b}
export RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1

work=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-pp-throughput.XXXXXX")
trap 'rm -rf "$work"' EXIT

spec() { # P -> spec path
  local p=$1 f="$work/deep-p$1.toml"
  cat >"$f" <<EOF2
name = "deep-lstm-p$p"
seed = 4
[model]
cell = "lstm"
layers = $LAYERS
hidden = $HIDDEN
projection = 32
[task]
kind = "forecast"
horizon = 1
[data]
path = "$ROOT/examples/data/seasonal.csv"
features = ["demand", "temperature"]
targets = ["demand"]
window = $WINDOW
split = [0.9, 0.05, 0.05]
[train]
epochs = 100
max_steps = $STEPS
batch_size = $BATCH
optimizer = { kind = "adam", lr = 0.001 }
[parallel]
pipeline = $p
microbatches = $MICRO
schedule = "$SCHEDULE"
[checkpoint]
dir = "$work/runs/p$p"
EOF2
  echo "$f"
}

echo "load before: $(uptime)"
declare -A sps
for p in 1 2; do
  out=$("$BIN" local "$(spec "$p")" --workers "$p" --output json)
  sps[$p]=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["result"]["samples_per_sec"])' <<<"$out")
done
echo "load after:  $(uptime)"
printf '%d x LSTM %d, batch %d, window %d, %d steps, %s with %d micro-batches\n' \
  "$LAYERS" "$HIDDEN" "$BATCH" "$WINDOW" "$STEPS" "$SCHEDULE" "$MICRO"
printf 'P = 1: %8.1f samples/s\nP = 2: %8.1f samples/s  (%.2fx)\n' \
  "${sps[1]}" "${sps[2]}" "$(python3 -c "print(${sps[2]} / ${sps[1]})")"
