#!/usr/bin/env bash
# Time from a coo leader change to every LogicNode being in the right mode (Local iff
# its own coo leads), per MQ scenario: median and worst over SEEDS seeds (default 8),
# in simulated time.
set -euo pipefail
cd "$(dirname "$0")/.."

ci/sim-cargo.sh --no-run
SIM_SWEEP=mq-switch SIM_BENCH_SEEDS="${1:-8}" ci/sim-cargo.sh -q
