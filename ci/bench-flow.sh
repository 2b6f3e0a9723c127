#!/usr/bin/env bash
# FlowBuilder's services in real mode, release build: local (NoOp, in memory) vs
# Raft (three coordd processes on 127.0.0.1), side by side — propose -> committed
# latency and cluster event-bus throughput (examples/bench_flow.rs).
# Usage: ci/bench-flow.sh [bench_flow args…]  (e.g. --proposals 300 --events 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin coordd --example bench_flow
./target/release/examples/bench_flow --coordd target/release/coordd "$@"
