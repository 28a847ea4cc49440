#!/usr/bin/env bash
# The long fault soak: tests/faults.rs's `a_soak_of_random_faults_ends_like_one_process` with
# FAULTS random faults (default 20; CI runs 4) of five kinds — a worker's link cut both ways, its
# outbound traffic dropped, SIGSTOP/SIGCONT, the coordinator cut off from it past a lease, kill -9
# and restart — against one 2-rank job with enough restarts, every process on a host of its own
# (network namespaces on a private bridge; needs root). Prints each fault's detection time
# (fault -> the coordinator gives the attempt up) and recovery time (fault -> the next attempt
# running), their p50 / max, and fails unless the job ends bit-identical to the same job run
# without faults.
#
#   sudo bash bench/soak.sh            # FAULTS=N to change the count
set -euo pipefail
cd "$(dirname "$0")/.."
export RINGTRAIN_SOAK_FAULTS="${FAULTS:-20}" RINGTRAIN_REQUIRE_NETNS=1
cargo test --locked --workspace --test faults -- --exact \
  a_soak_of_random_faults_ends_like_one_process --nocapture 2>&1 |
  grep -E '^(fault [0-9]+|soak of|test result|thread .* panicked)'
