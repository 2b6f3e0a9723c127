#!/usr/bin/env bash
# Time from a coo leader change to every LogicNode being in the right mode (Local iff
# its own coo leads), per MQ scenario: median and worst over SEEDS seeds (default 8),
# in simulated time.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="${SIM_TARGET_DIR:-target/sim}"
cargo test --features sim --test sim --no-run
SIM_SWEEP=mq-switch SIM_BENCH_SEEDS="${1:-8}" cargo test -q --features sim --test sim
