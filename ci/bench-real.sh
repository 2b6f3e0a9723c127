#!/usr/bin/env bash
# Throughput and p50/p99 latency of a real 3-node coordd cluster on 127.0.0.1
# (real gRPC, real files with fsync), release build:
#   1. puts through coordlab's own client API (examples/bench_put.rs);
#   2. puts and linearizable single-key ranges through the etcd v3 API
#      (examples/bench_etcd.rs), clients spread over all three members.
# Usage: ci/bench-real.sh            (CLIENTS="1 16 64" SECS=10 by default)
#        ETCD_ONLY=1 ci/bench-real.sh   only the etcd-API rows
#        LEADER_ONLY=1 ci/bench-real.sh etcd-API clients all on the leader
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${CLIENTS:-1 16 64}
secs=${SECS:-10}
cargo build --release --bin coordd --example bench_put --example bench_etcd
if [ -z "${ETCD_ONLY:-}" ]; then
  for c in $clients; do
    ./target/release/examples/bench_put --coordd target/release/coordd --clients "$c" --secs "$secs"
  done
fi
./target/release/examples/bench_etcd --coordd target/release/coordd \
  --clients "$(echo "$clients" | tr ' ' ',')" --secs "$secs" ${LEADER_ONLY:+--leader-only}
