#!/usr/bin/env bash
# Simulation benchmark on the reference scenario (scenarios/reference.toml: 5 nodes,
# KV workload, faults on): time dilation, seeds per minute, Raft messages and
# events per second, and the same message volume through bare raft-rs RawNodes in
# a plain in-memory loop as the physical limit, with the ratio.
# Usage: ci/bench-sim.sh [SEEDS]   (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."

ci/sim-cargo.sh --no-run
SIM_SWEEP=bench SIM_BENCH_SEEDS="${1:-8}" ci/sim-cargo.sh -q
