#!/usr/bin/env bash
# `cargo test` of the simulation target, built the way `cargo test --features sim`
# builds it (tests/sim.rs): `--cfg madsim`, the optimised `sim` profile, target/sim.
# Usage: ci/sim-cargo.sh [cargo test args…] (e.g. --no-run, -q, -- FILTER)
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR="${SIM_TARGET_DIR:-target/sim}"
exec cargo test --profile sim --features sim --test sim "$@"
