#!/usr/bin/env bash
# The long elastic soak: tests/elastic.rs's
# `an_elastic_soak_of_random_faults_trains_every_sample_once` with FAULTS random faults (default
# 20; CI runs 3) of five kinds — kill -9 and restart, a worker's link cut both ways, its outbound
# traffic dropped, SIGSTOP/SIGCONT, the coordinator cut off from it past a lease — against one
# elastic job (`[parallel.elastic] min = 2, max = 3`) on 3 workers, every process on a host of its
# own (network namespaces on a private bridge; needs root). After each fault the survivors
# re-form on 2 workers from their in-memory commit, and once the worker is healed the job grows
# back to 3. Prints each fault's shrink time (fault -> training again on 2 workers) and grow time
# (healed -> training again on 3), their p50 / max, and fails unless the job succeeds with every
# epoch's recorded sample ids exactly its shard plan (no sample twice, none missing).
#
#   sudo bash bench/elastic_soak.sh            # FAULTS=N to change the count
set -euo pipefail
cd "$(dirname "$0")/.."
export RINGTRAIN_ELASTIC_SOAK_FAULTS="${FAULTS:-20}" RINGTRAIN_REQUIRE_NETNS=1
cargo test --locked --workspace --test elastic -- --exact \
  an_elastic_soak_of_random_faults_trains_every_sample_once --nocapture 2>&1 |
  grep -E '^(fault [0-9]+|elastic soak of|the job finished|test result|thread .* panicked)'
