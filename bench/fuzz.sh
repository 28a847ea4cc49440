#!/usr/bin/env bash
# Fuzzes one target (or all, one after another) for SECONDS each with the stable-toolchain
# mutational fuzzer of crates/ringtrain-fuzz; with --cpu, SECONDS are CPU seconds of the fuzzing
# thread (every input runs on it), so a run on a loaded machine still does that much work. Exit
# status non-zero when something was found; the input is then in fuzz-crashes/ (replay:
# ringtrain-fuzz TARGET --replay FILE).
#   bench/fuzz.sh [--cpu] TARGET|all SECONDS [SEED]     targets: spec data checkpoint wire safetensors
set -euo pipefail
cpu=()
if [ "${1:-}" = --cpu ]; then
  cpu=(--cpu)
  shift
fi
here="$(cd "$(dirname "$0")" && pwd)"
target="${1:?usage: bench/fuzz.sh [--cpu] TARGET|all SECONDS [SEED]}"
seconds="${2:?usage: bench/fuzz.sh [--cpu] TARGET|all SECONDS [SEED]}"
seed="${3:-1}"
cd "$here/.."
# The dev profile builds dependencies at opt-level 3 and this crate at 1 (see Cargo.toml), with
# overflow checks and debug assertions on: the checks are part of what a fuzz run tests.
cargo build --locked --quiet -p ringtrain-fuzz --bin ringtrain-fuzz
bin="${CARGO_TARGET_DIR:-target}/debug/ringtrain-fuzz"
if [ "$target" = all ]; then
  set -- spec data checkpoint wire safetensors
else
  set -- "$target"
fi
for t in "$@"; do
  "$bin" "$t" "$seconds" "${cpu[@]}" --seed "$seed"
done
