#!/usr/bin/env bash
# Simulation benchmark, on the optimised simulation build users run:
#  1. the reference scenario (scenarios/reference.toml: 5 nodes, KV workload, faults
#     on), one thread, SIM_BENCH_REPEATS passes (default 3; the median is reported,
#     every pass must give the same trace hashes): time dilation, seeds per minute,
#     Raft messages and events per second, and the same message volume through bare
#     raft-rs RawNodes in a plain in-memory loop (repeated for at least 1 s) as the
#     physical limit, with the ratio;
#  2. the wall time of the default suite (`cargo test --features sim` after the
#     build: every scenario's default seeds and the determinism checks);
#  3. fuzz seeds per minute with 2 jobs over every scenario (fresh seeds, 2 min).
# Usage: ci/bench-sim.sh [SEEDS] [FUZZ_MINUTES]   (defaults 8 and 2)
set -euo pipefail
cd "$(dirname "$0")/.."

ci/sim-cargo.sh --no-run
echo "== reference scenario"
SIM_SWEEP=bench SIM_BENCH_SEEDS="${1:-8}" ci/sim-cargo.sh -q

echo "== default suite"
t0=$(date +%s%N)
ci/sim-cargo.sh -q >/dev/null 2>&1
ms=$((($(date +%s%N) - t0) / 1000000))
echo "default suite: $((ms / 1000)).$(printf %03d $((ms % 1000))) s wall on $(nproc) cores"

echo "== fuzz, 2 jobs"
SIM_SWEEP=fuzz SIM_SWEEP_MINUTES="${2:-2}" SIM_JOBS=2 SIM_SEED_BASE=900000000 ci/sim-cargo.sh -q 2>&1 \
  | grep "^fuzz: seeds=" | tail -1
