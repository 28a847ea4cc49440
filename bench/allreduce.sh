#!/usr/bin/env bash
# Side-by-side all-reduce bus bandwidth: ringtrain (gRPC, one process per rank) vs
# torch.distributed gloo, same machine, same N and sizes, same timing protocol.
#   RINGTRAIN=path/to/ringtrain PYTHON=path/to/python bench/allreduce.sh [WORLDS] [SIZES]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RINGTRAIN="${RINGTRAIN:-$here/../target/release/ringtrain}"
PYTHON="${PYTHON:-python3}"
WORLDS="${1:-2 4}"
SIZES="${2:-1MiB,16MiB,64MiB}"
ITERS="${ITERS:-20}"
for n in $WORLDS; do
  echo "== world $n =="
  ours="$("$RINGTRAIN" bench allreduce --world "$n" --bytes "$SIZES" --iters "$ITERS" --output json)"
  gloo="$("$PYTHON" "$here/allreduce_gloo.py" --world "$n" --bytes "$SIZES" --iters "$ITERS" --json)"
  "$PYTHON" - "$ours" "$gloo" <<'PY'
import json, sys
ours, gloo = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'bytes':>10} {'ours ms':>9} {'ours busbw':>11} {'gloo ms':>9} {'gloo busbw':>11} {'ratio':>6}")
for o, g in zip(ours, gloo):
    print(f"{o['bytes']:>10} {o['median_s']*1e3:>9.2f} {o['busbw_gbps']:>9.3f}GB {g['median_s']*1e3:>9.2f} "
          f"{g['busbw_gbps']:>9.3f}GB {o['busbw_gbps']/g['busbw_gbps']:>6.2f}")
PY
done
