#!/usr/bin/env bash
# Put throughput and p50/p99 latency of a real 3-node coordd cluster on 127.0.0.1
# (real gRPC, real files with fsync).
# Usage: ci/bench-real.sh            (CLIENTS="1 16 64" SECS=10 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin coordd --example bench_put
for clients in ${CLIENTS:-1 16 64}; do
  ./target/release/examples/bench_put --coordd target/release/coordd --clients "$clients" --secs "${SECS:-10}"
done
