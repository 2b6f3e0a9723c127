#!/usr/bin/env bash
# Throughput and p50/p99 latency of a real 3-node coordd cluster on 127.0.0.1
# (real gRPC, real files with fsync), release build:
#   1. puts and linearizable single-key ranges through the etcd v3 API
#      (examples/bench_etcd.rs), clients spread over all three members;
#   2. the same rows, by the same tool in the same run, against a 3-member etcd on
#      127.0.0.1 when an `etcd` binary is on PATH (Debian: etcd-server).
# Usage: ci/bench-real.sh            (CLIENTS="1 16 64" SECS=10 by default)
#        LEADER_ONLY=1 ci/bench-real.sh etcd-API clients all on the leader
#        NO_ETCD=1 ci/bench-real.sh     skip the etcd comparison
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${CLIENTS:-1 16 64}
secs=${SECS:-10}
ops=${OPS:-put,range}
cargo build --release --bin coordd --example bench_etcd
echo "== coordd (etcd v3 API)"
./target/release/examples/bench_etcd --coordd target/release/coordd --ops "$ops" \
  --clients "$(echo "$clients" | tr ' ' ',')" --secs "$secs" ${LEADER_ONLY:+--leader-only}

if [ -n "${NO_ETCD:-}" ] || ! command -v etcd >/dev/null; then
  [ -n "${NO_ETCD:-}" ] || echo "(no etcd on PATH: apt-get install etcd-server for the comparison rows)"
  exit 0
fi
echo "== $(etcd --version | head -1) (3 members on 127.0.0.1, same tool)"
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
base=$((23000 + RANDOM % 4000))
cluster=""
for i in 1 2 3; do cluster="${cluster:+$cluster,}e$i=http://127.0.0.1:$((base + 10 + i))"; done
endpoints=""
for i in 1 2 3; do
  client="http://127.0.0.1:$((base + i))"
  peer="http://127.0.0.1:$((base + 10 + i))"
  endpoints="${endpoints:+$endpoints,}127.0.0.1:$((base + i))"
  etcd --name "e$i" --data-dir "$dir/e$i" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --initial-cluster-token coordlab-bench >"$dir/e$i.log" 2>&1 &
  pids+=($!)
done
./target/release/examples/bench_etcd --endpoints "$endpoints" --server-pids "$(IFS=,; echo "${pids[*]}")" --ops "$ops" \
  --clients "$(echo "$clients" | tr ' ' ',')" --secs "$secs" ${LEADER_ONLY:+--leader-only}
