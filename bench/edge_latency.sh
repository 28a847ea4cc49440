#!/usr/bin/env bash
# Per-step latency at batch 1 of the same exported model in three runtimes, side by side in one
# run: ringtrain-infer's Stream::step (release build), onnxruntime (PyPI wheel, one thread,
# called from Python) and tract (Rust, `ringtrain-train` example, dependencies at opt-level 3).
# Models: a 1-layer LSTM 64 and a 2-layer LSTM 128 over the 2 features of
# examples/data/seasonal.csv, trained for 2 steps (latency does not depend on the weights),
# exported with `ringtrain export` as safetensors and as ONNX.
# All three stream: the ONNX export has its recurrent states as inputs and outputs
# (`--onnx-state`), which each run feeds back, as ringtrain-infer's Stream carries its own;
# every run is one step ([1, 1, features]): one cell update per layer plus the head. The last
# column is ringtrain-infer on the int8 export (matrices kept int8 in RAM).
#   bench/edge_latency.sh [STEPS]     default 100000
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
steps="${1:-100000}"
target="${CARGO_TARGET_DIR:-target}"
python="${RINGTRAIN_PYTHON:-$HOME/.cache/ringtrain/venv-grpc/bin/python}"
if ! "$python" -c "import onnxruntime, numpy" 2>/dev/null; then
  echo "error: $python cannot import onnxruntime; pip install -r .ci/requirements.txt" >&2
  exit 1
fi
cargo build --locked --quiet -p ringtrain-cli
cargo build --locked --quiet --release -p ringtrain-infer
cargo build --locked --quiet -p ringtrain-train --example tract_step
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ort_version="$("$python" -c 'import onnxruntime; print(onnxruntime.__version__)')"
echo "| model | ringtrain-infer µs/step | onnxruntime $ort_version µs/step | tract 0.23 µs/step | ringtrain-infer, int8 export, µs/step | stream state bytes |"
echo "|---|---|---|---|---|---|"
for model in "1 64" "2 128"; do
  set -- $model
  layers=$1 hidden=$2
  name="lstm${layers}x${hidden}"
  cat > "$work/$name.toml" <<TOML
name = "$name"
seed = 1
[model]
cell = "lstm"
hidden = $hidden
layers = $layers
dropout = 0.0
[task]
kind = "forecast"
horizon = 1
[data]
path = "$PWD/examples/data/seasonal.csv"
features = ["demand", "temperature"]
targets = ["demand"]
window = 12
split = [0.7, 0.15, 0.15]
[train]
epochs = 1
batch_size = 16
max_steps = 2
[checkpoint]
dir = "$work/runs/$name"
TOML
  "$target/debug/ringtrain" train "$work/$name.toml" --quiet > /dev/null 2>&1
  "$target/debug/ringtrain" export --checkpoint "$work/runs/$name" --out "$work/$name.safetensors" > /dev/null
  "$target/debug/ringtrain" export --checkpoint "$work/runs/$name" --out "$work/$name.onnx" --format onnx --onnx-state > /dev/null
  "$target/debug/ringtrain" export --checkpoint "$work/runs/$name" --out "$work/$name-int8.safetensors" --quantize int8 > /dev/null
  ours="$("$target/release/ringtrain-infer" --bench "$steps" "$work/$name.safetensors")"
  ort="$("$python" bench/onnxruntime_step.py "$work/$name.onnx" 2 "$steps")"
  tract="$("$target/debug/examples/tract_step" "$work/$name.onnx" 2 "$hidden" "$steps")"
  int8="$("$target/release/ringtrain-infer" --bench "$steps" "$work/$name-int8.safetensors")"
  state="$(echo "$ours" | sed -E 's/.*us\/step, ([0-9]+) bytes.*/\1/')"
  echo "| $layers-layer LSTM $hidden | ${ours%% us/step*} | ${ort%% us/step*} | ${tract%% us/step*} | ${int8%% us/step*} | $state |"
done
