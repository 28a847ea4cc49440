#!/usr/bin/env bash
# What int8 export costs on the bundled examples: trains each (debug build with optimized
# dependencies, like tests/), evaluates the test split with the f32 weights and with the
# weights an int8 export holds (`ringtrain eval --quantize int8`), and exports both to compare
# file sizes (whole file, and the tensors alone: the JSON header with the spec and the
# normalizer or vocabulary is the same in both). Prints one markdown row per example.
#   bench/int8.sh [SPEC ...]      default: every bundled example that needs no download
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
cargo build --locked --quiet -p ringtrain-cli
bin="${CARGO_TARGET_DIR:-target}/debug/ringtrain"
if [ $# -eq 0 ]; then
  set -- airline-lstm seasonal-gru smooth-daily-seasonal-delta seasonal-cnn-gru-attention \
    vic-elec-lstm sentiment-bilstm reverse-digits-seq2seq tiny-corpus-lm
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "| example | metric | f32 | int8 | change | f32 file bytes | int8 file bytes | file smaller | tensors smaller |"
echo "|---|---|---|---|---|---|---|---|---|"
for name in "$@"; do
  spec="examples/${name%.toml}.toml"
  run="$work/$name"
  # Logs go to a file, shown when a step fails.
  log="$work/$name.log"
  if ! { "$bin" train "$spec" --quiet --checkpoint-dir "$run" > /dev/null &&
    "$bin" eval --checkpoint "$run" --output json > "$work/f32.json" &&
    "$bin" eval --checkpoint "$run" --output json --quantize int8 > "$work/int8.json" &&
    "$bin" export --checkpoint "$run" --out "$work/f32.safetensors" > /dev/null &&
    "$bin" export --checkpoint "$run" --out "$work/int8.safetensors" --quantize int8 > /dev/null
  } 2> "$log"; then
    cat "$log" >&2
    exit 1
  fi
  python3 - "$name" "$work" <<'PY'
import json, os, sys
name, work = sys.argv[1], sys.argv[2]
a = json.load(open(f"{work}/f32.json"))
b = json.load(open(f"{work}/int8.json"))
def metric(r):
    m = r["metrics"]
    if m["kind"] == "forecast":
        return "mse", m["model"]["mse"]
    wanted = {
        "classification": ("accuracy",),
        "translation": ("bleu", "bleu4", "corpus_bleu"),
        "language_model": ("bits_per_token", "perplexity"),
    }.get(m["kind"], ())
    for key in wanted:
        if isinstance(m.get(key), (int, float)):
            return key, m[key]
    return "loss", r["loss"]
key, x = metric(a)
_, y = metric(b)
relative = key in ("mse", "loss", "bits_per_token", "perplexity")
change = f"{(y - x) / x * 100:+.2f} %" if relative else f"{(y - x) * 100:+.2f} points"
fs, qs = os.path.getsize(f"{work}/f32.safetensors"), os.path.getsize(f"{work}/int8.safetensors")
def tensor_bytes(path):
    # A safetensors file: 8-byte header length, the JSON header (names, shapes, metadata),
    # then the tensors.
    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    return os.path.getsize(path) - 8 - header
ft, qt = tensor_bytes(f"{work}/f32.safetensors"), tensor_bytes(f"{work}/int8.safetensors")
print(f"| `{name}` | {key} | {x:.6g} | {y:.6g} | {change} | {fs:,} | {qs:,} | {fs / qs:.2f}x | {ft / qt:.2f}x |")
PY
done
