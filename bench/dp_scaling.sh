#!/usr/bin/env bash
# Data-parallel scaling on the standard LSTM config (2 layers, input 32, hidden 128, sequence 50,
# Adam, MSE head, batch 64 per rank, one thread per process): ringtrain with 1 worker vs 2 workers
# (`ringtrain local SPEC --workers N`, gRPC ring all-reduce) side by side with PyTorch DDP (gloo)
# at world 1 vs 2 (bench/ddp_pytorch.py), in one go on the same machine.
#
#   cargo build --release -p ringtrain-cli
#   bash bench/dp_scaling.sh                      # PYTHON=... BIN=... ROWS=... DDP_STEPS=... to adjust
#
# Prints samples/s (all ranks) and scaling efficiency = samples/s at 2 / (2 x samples/s at 1).
# Weak scaling, like DDP: the global batch is N x 64, so each rank's step is the same size.
#
# ringtrain's samples/s is the final job result of `ringtrain local ... --output json`, read at the
# JSON path in RT_SPS_PATH (default job.result.samples_per_sec); the run's log is kept in the work
# directory (printed at the end; KEEP=1 keeps the directory). The synthetic dataset (ROWS rows of 32
# smooth noisy series, one epoch) is sized so one ringtrain run takes ~20-40 s on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${BIN:-}" ]; then
  BIN=target/release/ringtrain
  [ -x "$BIN" ] || BIN="${CARGO_TARGET_DIR:-target}/release/ringtrain"
fi
PYTHON=${PYTHON:-$(bash bench/setup-venv.sh)}
ROWS=${ROWS:-42000}             # ~40,000 training windows: one epoch
DDP_STEPS=${DDP_STEPS:-100}     # timed DDP steps per run (after DDP_WARMUP)
DDP_WARMUP=${DDP_WARMUP:-5}
RT_SPS_PATH=${RT_SPS_PATH:-job.result.samples_per_sec}
export RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1
[ -x "$BIN" ] || { echo "missing $BIN: cargo build --release -p ringtrain-cli" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ringtrain-dp-scaling.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT

# Synthetic series: 32 columns, each a sine of its own period plus noise; f0 is the target.
"$PYTHON" - "$work/series.csv" "$ROWS" <<'EOF'
import math, random, sys
path, rows = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
with open(path, "w") as f:
    f.write(",".join(f"f{k}" for k in range(32)) + "\n")
    for t in range(rows):
        f.write(",".join(f"{math.sin(2 * math.pi * t / (12 + k)) + 0.1 * rng.gauss(0, 1):.5f}"
                         for k in range(32)) + "\n")
EOF

spec() { # N -> path of a spec for N data-parallel ranks, batch 64 each
  local n=$1 f="$work/dp-w$1.toml"
  cat >"$f" <<EOF
name = "dp-scaling-w$n"
seed = 7

[model]
cell = "lstm"
layers = 2
hidden = 128

[task]
kind = "forecast"
horizon = 1
loss = "mse"

[data]
path = "series.csv"
features = [$(seq -s, 0 31 | sed 's/\([0-9]\+\)/"f\1"/g')]
targets = ["f0"]
window = 50
split = [0.96, 0.02, 0.02]

[train]
epochs = 1
batch_size = $((64 * n))
threads = 1
optimizer = { kind = "adam", lr = 0.001 }

[parallel]
data = $n

[checkpoint]
dir = "runs/w$n"
EOF
  echo "$f"
}

ringtrain_sps() { # N -> samples/s of the finished job
  local n=$1 out="$work/ringtrain-w$1.json" log="$work/ringtrain-w$1.log"
  if ! "$BIN" local "$(spec "$n")" --workers "$n" --threads 1 --output json >"$out" 2>"$log"; then
    echo "ringtrain local --workers $n failed; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    return 1
  fi
  # The last JSON document on stdout; RT_SPS_PATH is a dotted path into it.
  "$PYTHON" - "$out" "$RT_SPS_PATH" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
try:
    doc = json.loads(text)
except json.JSONDecodeError:  # several documents (one per line): take the last one that parses
    doc = None
    for line in reversed(text.splitlines()):
        try:
            doc = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    if doc is None:
        sys.exit(f"no JSON document in {sys.argv[1]}")
for key in sys.argv[2].split("."):
    if not isinstance(doc, dict) or key not in doc:
        sys.exit(f"{sys.argv[1]}: no '{key}' on the path {sys.argv[2]}")
    doc = doc[key]
print("%.1f" % float(doc))
EOF
}

ddp_sps() { # N -> samples/s of PyTorch DDP at world N
  "$PYTHON" bench/ddp_pytorch.py --world "$1" --steps "$DDP_STEPS" --warmup "$DDP_WARMUP" |
    "$PYTHON" -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["samples_per_sec"])'
}

echo "load before: $(uptime)"
# Interleaved so that drift in the machine's load hits both sides alike.
rt1=$(ringtrain_sps 1)
pt1=$(ddp_sps 1)
rt2=$(ringtrain_sps 2)
pt2=$(ddp_sps 2)
echo "load after:  $(uptime)"

"$PYTHON" - "$rt1" "$rt2" "$pt1" "$pt2" <<'EOF'
import sys
rt1, rt2, pt1, pt2 = map(float, sys.argv[1:])
print()
print("standard LSTM (2x128, in 32, seq 50, Adam), batch 64 per rank, 1 thread per process, samples/s")
print(f"{'':28} {'1 worker':>10} {'2 workers':>10} {'efficiency':>11}")
for name, one, two in (("ringtrain (gRPC ring)", rt1, rt2), ("PyTorch DDP (gloo)", pt1, pt2)):
    print(f"{name:28} {one:>10.0f} {two:>10.0f} {two / (2 * one):>10.1%}")
print(f"{'ringtrain / PyTorch':28} {rt1 / pt1:>9.2f}x {rt2 / pt2:>9.2f}x")
EOF
