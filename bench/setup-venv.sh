#!/usr/bin/env bash
# Creates (once) the Python virtual environment the side-by-side benchmarks use for the peer:
# torch from PyPI (the standard wheel, ~5 GB with its CUDA libraries; it runs on CPU here) and
# numpy. .ci/run uses it for the export's PyTorch parity test (crates/ringtrain-train/tests/torch.rs).
# Prints the interpreter path. Override the location with RINGTRAIN_BENCH_VENV.
set -euo pipefail
venv="${RINGTRAIN_BENCH_VENV:-$HOME/.cache/ringtrain/venv-torch}"
if ! "$venv/bin/python" -c "import torch, numpy" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==2.15.0" "numpy==2.4.6" >&2
fi
echo "$venv/bin/python"
