#!/usr/bin/env bash
# Memory of real pipeline stage processes: the deep LSTM of bench/pipeline_throughput.sh (LAYERS
# LSTM layers of HIDDEN units after a 32-wide projection, Adam) trained for STEPS steps by a real
# coordinator and P worker processes (`ringtrain coordinator`, `ringtrain worker`, `ringtrain
# submit --watch`), for P = 1 and P = 2 (one replica). For every worker process it prints the
# resident set before the job (idle, registered: the process's own baseline) and its peak resident
# set (VmHWM from /proc/PID/status, read after the job while the worker is idle again), and which
# stage it ran. The peak covers the whole job: training steps, the end-of-run evaluation (which
# gathers the whole parameters on every rank) and the checkpoint.
#
#   cargo build --release -p ringtrain-cli
#   bash bench/pipeline_memory.sh        # BIN=path/to/ringtrain LAYERS=8 HIDDEN=512 STEPS=2 ...
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${BIN:-}" ]; then
  BIN=target/release/ringtrain
  [ -x "$BIN" ] || BIN="${CARGO_TARGET_DIR:-target}/release/ringtrain"
fi
[ -x "$BIN" ] || { echo "missing $BIN: cargo build --release -p ringtrain-cli" >&2; exit 1; }
[ -r /proc/self/status ] || { echo "needs Linux /proc/PID/status" >&2; exit 1; }
LAYERS=${LAYERS:-8}
HIDDEN=${HIDDEN:-512}
STEPS=${STEPS:-2}
BATCH=${BATCH:-32}
WINDOW=${WINDOW:-20}
MICRO=${MICRO:-4}
export RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1

work=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-pp-memory.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mb() { python3 -c "print(f'{$1 / 1024:.1f}')"; }

# Starts `ringtrain ARGS...` in the background with stdout to FILE; waits for its ready line.
start() {
  local out=$1; shift
  "$BIN" "$@" >"$out" 2>"$out.log" &
  pids+=($!)
  for _ in $(seq 600); do
    [ -s "$out" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$out.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "no ready line from $*" >&2; exit 1
}

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
[checkpoint]
dir = "$work/runs/p$p"
EOF2
  echo "$f"
}

echo "$LAYERS x LSTM $HIDDEN after a 32-wide projection, Adam, batch $BATCH, window $WINDOW, $STEPS steps, $MICRO micro-batches; $BIN"
echo "load before: $(uptime)"
for p in 1 2; do
  start "$work/coord-$p.json" coordinator --listen 127.0.0.1:0 --state "$work/state-$p.db"
  addr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc"])' "$work/coord-$p.json")
  declare -A wpid=() base=()
  for i in $(seq 0 $((p - 1))); do
    start "$work/worker-$p-$i.json" worker --coordinator "$addr" --listen 127.0.0.1:0 \
      --threads 1 --name "mem-$i"
    wpid[mem-$i]=${pids[-1]}
  done
  sleep 2 # registered and idle
  for name in "${!wpid[@]}"; do base[$name]=$(kib "${wpid[$name]}" VmRSS); done
  "$BIN" submit "$(spec "$p")" --watch --coordinator "$addr" >"$work/job-$p.txt" 2>&1 || {
    cat "$work/job-$p.txt" >&2; exit 1; }
  job=$("$BIN" status --coordinator "$addr" --output json)
  workers=$("$BIN" workers --coordinator "$addr" --output json)
  for name in $(printf '%s\n' "${!wpid[@]}" | sort); do
    rank=$(python3 - "$job" "$workers" "$name" <<'EOF3'
import json, sys
jobs, workers, name = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
wid = next(w["id"] for w in workers if w["name"] == name)
job = jobs[0]
assert job["state"] == "succeeded", job["state"]
print(job["workers"].index(wid))
EOF3
)
    peak=$(kib "${wpid[$name]}" VmHWM)
    printf 'P = %d, stage %d: idle %6s MB, peak %7s MB, peak - idle %7s MB\n' "$p" "$rank" \
      "$(mb "${base[$name]}")" "$(mb "$peak")" "$(mb "$((peak - base[$name]))")"
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  unset wpid base
done
echo "load after:  $(uptime)"
