#!/usr/bin/env bash
# Throughput and p50/p99 latency of a real 3-node coordd cluster on 127.0.0.1
# (real gRPC, real files with fsync), release build:
#   1. puts and linearizable single-key ranges through the etcd v3 API
#      (examples/bench_etcd.rs), clients spread over all three members;
#   2. the same rows, by the same tool in the same run, against a 3-member etcd on
#      127.0.0.1 when an `etcd` binary is on PATH (Debian: etcd-server).
# With RUNS=N the two alternate N times (a 2-core machine varies by tens of per
# cent from one minute to the next, etcd as much as coordd) and a summary gives
# each row's totals over the runs, coordd's ratio to etcd, and the p99s side by side.
# Usage: ci/bench-real.sh            (CLIENTS="1 16 64" SECS=10 RUNS=1 by default)
#        RUNS=5 CLIENTS=16 SECS=20 OPS=put ci/bench-real.sh
#        LEADER_ONLY=1 ci/bench-real.sh etcd-API clients all on the leader
#        NO_ETCD=1 ci/bench-real.sh     skip the etcd comparison
set -euo pipefail
cd "$(dirname "$0")/.."
clients=$(echo "${CLIENTS:-1 16 64}" | tr ' ' ',')
secs=${SECS:-10}
ops=${OPS:-put,range}
runs=${RUNS:-1}
cargo build --release --bin coordd --example bench_etcd
bench=./target/release/examples/bench_etcd
with_etcd=1
if [ -n "${NO_ETCD:-}" ] || ! command -v etcd >/dev/null; then
  [ -n "${NO_ETCD:-}" ] || echo "(no etcd on PATH: apt-get install etcd-server for the comparison rows)"
  with_etcd=
fi
rows=$(mktemp)
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir" "$rows"; }
trap cleanup EXIT

# Prints bench_etcd's output and keeps its rows, tagged with the server, for the summary.
keep() {
  local line
  while IFS= read -r line; do
    echo "$line"
    case $line in *throughput=*) echo "$1 $line" >>"$rows" ;; esac
  done
}

run_etcd() {
  local base cluster="" endpoints="" i client peer
  base=$((23000 + RANDOM % 4000))
  for i in 1 2 3; do cluster="${cluster:+$cluster,}e$i=http://127.0.0.1:$((base + 10 + i))"; done
  pids=()
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
  $bench --endpoints "$endpoints" --server-pids "$(IFS=,; echo "${pids[*]}")" --ops "$ops" \
    --clients "$clients" --secs "$secs" ${LEADER_ONLY:+--leader-only} 2>&1 | keep etcd
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "${dir:?}"/e*
}

for run in $(seq 1 "$runs"); do
  echo "== run $run/$runs: coordd (etcd v3 API)"
  $bench --coordd target/release/coordd --ops "$ops" --clients "$clients" --secs "$secs" \
    ${LEADER_ONLY:+--leader-only} 2>&1 | keep coordd
  if [ -n "$with_etcd" ]; then
    echo "== run $run/$runs: $(etcd --version | head -1) (3 members on 127.0.0.1, same tool)"
    run_etcd
  fi
done

if [ "$runs" -gt 1 ]; then
  echo "== totals over $runs runs"
  awk '
    {
      server = $1; row = ""
      for (i = 2; i <= NF; i++) {
        if ($i ~ /^op=/ || $i ~ /^clients=/) row = (row == "" ? $i : row " " $i)
        if ($i ~ /^throughput=/) { t = $i; sub(/throughput=/, "", t); sub(/\/s/, "", t) }
        if ($i ~ /^p99=/) { p = $i; sub(/p99=/, "", p); sub(/ms/, "", p) }
      }
      if (!(row in seen)) { seen[row] = 1; order[++n] = row }
      total[server, row] += t
      p99s[server, row] = p99s[server, row] (p99s[server, row] == "" ? "" : " / ") p
    }
    END {
      for (k = 1; k <= n; k++) {
        row = order[k]
        line = sprintf("%s: coordd %d ops/s in total, p99 %s ms", row, total["coordd", row], p99s["coordd", row])
        if (total["etcd", row] > 0)
          line = line sprintf("; etcd %d, p99 %s ms; ratio %.2fx", total["etcd", row], p99s["etcd", row], total["coordd", row] / total["etcd", row])
        print line
      }
    }' "$rows"
fi
