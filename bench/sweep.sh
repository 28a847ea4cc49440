#!/usr/bin/env bash
# Hyperparameter search benchmarks (issue 14), recorded in BENCHMARKS.md.
#   bench/sweep.sh            # TPE vs random vs grid and ASHA vs full budget, synthetic objective
#   bench/sweep.sh --prunes   # also: 7 runs of the 2-worker ASHA test (3+ prunes each, ≥ 21 prunes)
# The synthetic part runs through the ringtrain-sweep library alone (no cluster): the objective
# and its learning curves are in crates/ringtrain-sweep/examples/search_bench.rs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
cargo run --release --locked -q -p ringtrain-sweep --example search_bench
if [[ "${1:-}" == "--prunes" ]]; then
  for i in 1 2 3 4 5 6 7; do
    echo "== prune run $i =="
    cargo test --locked -q --workspace --test sweep -- --exact \
      asha_prunes_a_data_parallel_trial_on_every_rank_at_the_same_step
  done
fi
