#!/usr/bin/env bash
# Proves the checkers catch what they claim: runs each catalogued mutant
# (src/seams/mutants.rs) over fresh seeds until it is caught or the budget runs out,
# and prints a table. Exits non-zero if any mutant escapes.
#
# A mutant listed in `targets` below is hunted on the scenarios built to catch it;
# every other mutant on every scenario, round-robin.
#
# Usage: ci/mutants.sh [MAX_RUNS_PER_MUTANT]      (default 300; SIM_JOBS=2)
#        SIM_BIN=path ci/mutants.sh …             (a built simulation test binary: no cargo)
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-300}"

if [ -n "${SIM_BIN:-}" ]; then
  sim() { "$SIM_BIN" 2>/dev/null; }
else
  ci/sim-cargo.sh -q --no-run >/dev/null 2>&1 || ci/sim-cargo.sh --no-run
  sim() { ci/sim-cargo.sh -q 2>/dev/null; }
fi

# mutant -> the scenarios that target it (comma-separated).
targets() {
  case "$1" in
    stale_reads | reuse_read_context | read_before_apply) echo coord_read_races ;;
    # a delayed duplicate of an acknowledged put
    apply_overtaken_retry) echo client_retries ;;
    follower_lease_expiry) echo coord_steady,coord_faults ;;
    lock_ignores_holder) echo coord_steady,coord_faults,coord_clocks_disks ;;
    watch_skips_history) echo coord_steady,coord_watch_compaction ;;
    # client library
    lock_no_keepalive | resolver_ignores_deletes) echo library_steady,library_faults ;;
    # lease expiry, fencing tokens, watch resumption
    lessor_half_ttl | fencing_token_header_revision | watch_resumes_from_now) echo library_steady,library_faults ;;
    # Link Bridge
    bridge_no_notice_push | bridge_broker_expires_agents | bridge_replicates_clients) echo bridge_steady,bridge_faults ;;
    # FlowBuilder's Raft services
    flow_commit_before_apply | flow_renew_lost_lock | flow_events_per_node_order) echo flow_steady,flow_faults ;;
    # the coo's promises (issue 17)
    coo_never_expires) echo mq_broker_expiry,mq_leader_churn ;;
    # the members' own auto-compaction
    compactor_quits_on_followers | compactor_keeps_nothing) echo coord_auto_compaction ;;
    expiry_on_follower_clock) echo mq_broker_expiry ;;
    placement_ignores_replication | placement_from_scratch) echo mq_broker_expiry,mq_leader_churn ;;
    group_partition_twice) echo mq_groups ;;
    *) echo "" ;;
  esac
}

mutants=$(SIM_SWEEP=mutants sim | cut -f1,2)
printf '%-34s %-7s %-14s %-10s %-22s %-22s %s\n' mutant caught runs_to_catch wall_ms invariant_fired expected first_catch
escaped=0
while IFS=$'\t' read -r name expected; do
  [ -n "$name" ] || continue
  line=$(SIM_MUTANT="$name" SIM_SWEEP=hunt SIM_SWEEP_MAX_RUNS="$budget" SIM_SWEEP_SCENARIOS="$(targets "$name")" sim | grep '^hunt:' || true)
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
  caught=$(field caught); runs=$(field runs); wall=$(field wall_ms); inv=$(field invariant)
  where="$(field scenario)::seed_$(field seed)"
  [ "$caught" = yes ] || { escaped=$((escaped + 1)); where=-; caught=${caught:-no}; }
  printf '%-34s %-7s %-14s %-10s %-22s %-22s %s\n' "$name" "$caught" "${runs:--}" "${wall:--}" "${inv:--}" "$expected" "$where"
done <<<"$mutants"
if [ "$escaped" -gt 0 ]; then
  echo "$escaped mutant(s) escaped" >&2
  exit 1
fi
