#!/usr/bin/env bash
# Link Bridge in real mode, release build: three coordd on 127.0.0.1 each running a
# broker (coordd --bridge-config), then examples/bench_bridge.rs: the proxy's
# overhead (p50/p99, direct vs proxied, side by side) and how long a shutdown
# notice takes to reach a client on every broker. Then the same in simulated time
# (the optimised simulation build, `SIM_SWEEP=bridge-times`): notice -> every
# client moved, broker crash or stop -> its clients on another broker.
# Usage: ci/bench-bridge.sh            (CALLS=500 ROUNDS=20 SEEDS=16 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin coordd --example bench_bridge
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
base=$((24000 + RANDOM % 4000))
peers=""
for i in 1 2 3; do peers="${peers:+$peers,}$i=127.0.0.1:$((base + i))"; done
for i in 1 2 3; do
  cat >"$dir/bridge-$i.yaml" <<YAML
broker:
  node: { id: "broker-$i", address: "127.0.0.1:$((base + 10 + i))", dataDir: "$dir/node-$i" }
  cluster:
    raft: { port: $((base + i)), electionTimeout: "1s", heartbeatInterval: "100ms", snapshotInterval: "1h", snapshotRetention: 3 }
    members:
      - { id: "broker-1", address: "127.0.0.1:$((base + 1))" }
      - { id: "broker-2", address: "127.0.0.1:$((base + 2))" }
      - { id: "broker-3", address: "127.0.0.1:$((base + 3))" }
  local: { maxClients: 1000, clientTimeout: "5s" }
  shutdown: { gracePeriod: "5s", notifyClients: true }
YAML
  ./target/release/coordd --id "$i" --listen "127.0.0.1:$((base + i))" --peers "$peers" \
    --data-dir "$dir/node-$i" --bridge-config "$dir/bridge-$i.yaml" 2>"$dir/node-$i.log" &
  pids+=($!)
done
./target/release/examples/bench_bridge \
  --brokers "127.0.0.1:$((base + 11)),127.0.0.1:$((base + 12)),127.0.0.1:$((base + 13))" \
  --members "127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))" \
  --calls "${CALLS:-500}" --rounds "${ROUNDS:-20}"

echo "== in simulated time"
ci/sim-cargo.sh --no-run
SIM_SWEEP=bridge-times SIM_BENCH_SEEDS="${SEEDS:-16}" ci/sim-cargo.sh -q
