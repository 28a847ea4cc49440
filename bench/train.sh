#!/usr/bin/env bash
# Training speed of ringtrain's recurrent layers side by side with PyTorch, same machine, same run.
#
#   bench/train.sh            # needs target/release/ringtrain (cargo build --release -p ringtrain-cli)
#   PYTHON=/path/to/python STEPS=20 bench/train.sh
#
# For each cell (lstm, gru, rnn) and variant (standard: batch 64 seq 50; batch 8; seq 200) it runs
# `ringtrain bench train --threads 1` and bench/train_pytorch.py (1 thread) one after the other and
# prints samples/s and the ratio ours/PyTorch. Then two ringtrain processes at once (one per core)
# against one alone, to show the layers scale to both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/ringtrain}
PYTHON=${PYTHON:-$(bash bench/setup-venv.sh)}
STEPS=${STEPS:-20}
export RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1
[ -x "$BIN" ] || { echo "missing $BIN: cargo build --release -p ringtrain-cli" >&2; exit 1; }

ours() { # args: cell batch seq -> samples/s
  "$BIN" bench train --cell "$1" --threads 1 --batch "$2" --seq "$3" --steps "$STEPS" --output json |
    "$PYTHON" -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["samples_per_sec"])'
}
torch() {
  "$PYTHON" bench/train_pytorch.py --cell "$1" --batch "$2" --seq "$3" --steps "$STEPS" --json |
    "$PYTHON" -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["samples_per_sec"])'
}

printf '%-5s %-22s %12s %12s %7s\n' cell variant ringtrain pytorch ratio
for variant in "standard 64 50" "batch8 8 50" "seq200 64 200"; do
  read -r name batch seq <<<"$variant"
  for cell in lstm gru rnn; do
    a=$(ours "$cell" "$batch" "$seq")
    b=$(torch "$cell" "$batch" "$seq")
    printf '%-5s %-22s %12s %12s %7s\n' "$cell" "$name (b=$batch t=$seq)" "$a" "$b" \
      "$("$PYTHON" -c "print('%.2fx' % ($a / $b))")"
  done
done

echo
echo "two ringtrain processes at once (standard config, 1 thread each), samples/s:"
printf '%-5s %10s %10s %10s %10s\n' cell alone proc1 proc2 scaling
for cell in lstm gru rnn; do
  alone=$(ours "$cell" 64 50)
  t1=$(mktemp); t2=$(mktemp)
  ours "$cell" 64 50 >"$t1" & p1=$!
  ours "$cell" 64 50 >"$t2" & p2=$!
  wait "$p1" "$p2"
  a=$(cat "$t1"); b=$(cat "$t2"); rm -f "$t1" "$t2"
  printf '%-5s %10s %10s %10s %10s\n' "$cell" "$alone" "$a" "$b" \
    "$("$PYTHON" -c "print('%.2fx' % (($a + $b) / $alone))")"
done
