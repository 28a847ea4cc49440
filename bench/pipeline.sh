#!/usr/bin/env bash
# Pipeline bubble: the measured idle share of each stage next to the ideal (P-1)/(M+P-1), for
# P = 2, 3 stages and M = 1, 4, 8 micro-batches (GPipe), each stage a real worker process of
# `ringtrain local SPEC --workers P` (gRPC send/recv between stages, one thread per process).
#
#   cargo build --release -p ringtrain-cli
#   bash bench/pipeline.sh              # BIN=... STEPS=... HIDDEN=... SCHEDULE=1f1b to adjust
#
# The model is a projection, 6 LSTM layers (HIDDEN units) and a head, so P = 2 and P = 3 both cut
# it into stages of equal recurrent work; batch 64, window 24, on the bundled seasonal series.
# Each worker logs one line per stage after the last step ("pipeline stage S of P: ... busy B s,
# idle I s, bubble F (ideal G ...)"), which this script reads from the workers' logs: busy is
# forward/backward compute, idle is waiting for (and handing over) activations and gradients,
# bubble = idle / (busy + idle) over STEPS steps. It excludes the per-step gradient all-gather
# between stages and the optimizer update (run by every stage), so it isolates the schedule.
# Note: on a machine with fewer cores than P processes, stages also wait for a core, which shows
# up as busy time, not idle time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${BIN:-}" ]; then
  BIN=target/release/ringtrain
  [ -x "$BIN" ] || BIN="${CARGO_TARGET_DIR:-target}/release/ringtrain"
fi
[ -x "$BIN" ] || { echo "missing $BIN: cargo build --release -p ringtrain-cli" >&2; exit 1; }
STEPS=${STEPS:-20}
HIDDEN=${HIDDEN:-64}
SCHEDULE=${SCHEDULE:-gpipe}
export RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1

work=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-pipeline.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT

spec() { # P M -> path of the spec
  local p=$1 m=$2 f="$work/pp-p$1-m$2.toml"
  cat >"$f" <<EOF
name = "pipeline-p$p-m$m"
seed = 3

[model]
cell = "lstm"
layers = 6
hidden = $HIDDEN
projection = 32

[task]
kind = "forecast"
horizon = 1
season = 12

[data]
path = "$ROOT/examples/data/seasonal.csv"
features = ["demand", "temperature"]
targets = ["demand"]
window = 24
split = [0.9, 0.05, 0.05]

[train]
epochs = 100
max_steps = $STEPS
batch_size = 64
optimizer = { kind = "adam", lr = 0.001 }

[parallel]
pipeline = $p
microbatches = $m
schedule = "$SCHEDULE"

[checkpoint]
dir = "$work/runs/p$p-m$m"
EOF
  echo "$f"
}

printf '%-3s %-3s %-6s %-9s %-9s %-9s %s\n' P M stage busy_s idle_s bubble "ideal (P-1)/(M+P-1)"
for p in 2 3; do
  for m in 1 4 8; do
    logs="$work/logs-p$p-m$m"
    "$BIN" local "$(spec "$p" "$m")" --workers "$p" --output json --logs-dir "$logs" \
      >"$work/out-p$p-m$m.json" 2>"$work/err-p$p-m$m.txt" \
      || { echo "P=$p M=$m failed; see $work (KEEP=1)" >&2; cat "$work/err-p$p-m$m.txt" >&2; KEEP=1; exit 1; }
    grep -ho 'pipeline stage [0-9]* of [0-9]*: [^"]*' "$logs"/worker-*.log | sort -u |
      sed -E 's/pipeline stage ([0-9]+) of ([0-9]+): .* busy ([0-9.]+) s, idle ([0-9.]+) s, +bubble ([0-9.]+) \(ideal ([0-9.]+) for M = ([0-9]+)\).*/\2 \7 \1 \3 \4 \5 \6/' |
      sort -k3n | awk '{ printf "%-3s %-3s %-6s %-9s %-9s %-9s %s\n", $1, $2, $3, $4, $5, $6, $7 }'
  done
done
