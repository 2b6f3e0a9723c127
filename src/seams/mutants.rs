//! Deliberately injected bugs that prove the harness's checkers catch what they
//! claim to catch. Compiled only into simulation builds (`--cfg madsim`) and off by
//! default; `SIM_MUTANT=<name>` turns one on. In production builds [`active`] is a
//! constant `false` and every mutant site compiles to nothing.
//!
//! The catalog is the single list of mutants, each with the invariant expected to
//! trip. Later components add their own entries here.

/// (name, invariant expected to fire, what the bug is).
pub const CATALOG: &[(&str, &str, &str)] = &[
    (
        "send_before_sync",
        "persist_before_send",
        "send Ready.persisted_messages() before persisting and syncing the batch",
    ),
    (
        "skip_fsync",
        "persist_before_send",
        "claim durability without syncing: the WAL is written but never fsynced",
    ),
    (
        "forget_vote",
        "persist_before_send",
        "persist the HardState without its vote",
    ),
    (
        "apply_uncommitted",
        "state_machine_safety",
        "apply log entries as soon as they are persisted, before they are committed",
    ),
    (
        "lose_commit_on_restart",
        "recovery_durability",
        "forget the persisted commit index when recovering",
    ),
    (
        "ack_wrong_client",
        "acknowledged_writes",
        "answer whichever proposal waits at an index (FIFO), ignoring the entry's request id",
    ),
    (
        "drop_conf_change",
        "member_convergence",
        "drop a committed ConfChange instead of applying it",
    ),
    (
        "stale_reads",
        "linearizability",
        "serve linearizable reads from local state, skipping ReadIndex",
    ),
    (
        "reuse_read_context",
        "linearizability",
        "reuse one ReadIndex request context: a later read is answered with an earlier read's index",
    ),
    (
        "follower_lease_expiry",
        "lease_not_early",
        "followers expire leases from their own clocks, blind to keep-alives sent to the leader",
    ),
    (
        "lock_ignores_holder",
        "lock_single_holder",
        "grant a lock once the holder's TTL has passed on the waiter's clock, without checking the holder's lease",
    ),
    (
        "watch_skips_history",
        "watch_order",
        "a watch created at a past start revision skips the history and starts at the current revision",
    ),
    (
        "retry_reapplies_writes",
        "acknowledged_writes",
        "ignore write ids: a client's retry of a numbered write whose answer was lost applies it again",
    ),
    (
        "apply_overtaken_retry",
        "linearizability",
        "a numbered write older than its client's latest (a retry overtaken by the next write) is applied",
    ),
    (
        "read_before_apply",
        "linearizability",
        "answer a ReadIndex read as soon as its index is confirmed, before the node applied up to it",
    ),
    (
        "lock_no_keepalive",
        "library_lock_safety",
        "the library stops renewing a held lock's lease while the guard still says it is held",
    ),
    (
        "resolver_ignores_deletes",
        "library_routing",
        "get_connection keeps routing to instances whose deregistration it has seen",
    ),
    (
        "lessor_half_ttl",
        "lease_expiry",
        "the leader's lessor expires a lease half its TTL after (re)starting it",
    ),
    (
        "fencing_token_header_revision",
        "library_fencing_token",
        "a lock guard's fencing token is the store revision of the read that found its key, not the key's create revision",
    ),
    (
        "watch_resumes_from_now",
        "library_watch_delivery",
        "a library watch whose stream broke or went silent resumes from the current revision, dropping what it missed",
    ),
    (
        "keep_old_receiver",
        "single_state_receiver",
        "a LogicNode keeps the old loop's broker state receiver on a switch (leak)",
    ),
    (
        "ignore_not_leader_local",
        "mode_matches_leadership",
        "Local mode ignores NotLeader from its coo and never switches away",
    ),
    (
        "watcher_first_change_only",
        "mode_matches_leadership",
        "the leadership watcher signals only the first change",
    ),
    (
        "external_sticks_to_deposed_leader",
        "reports_reach_leader",
        "the External client keeps talking to the coo it first reached, even once deposed",
    ),
    (
        "start_before_stop",
        "one_active_loop",
        "a switch starts the new loop before the old one has stopped",
    ),
    (
        "bridge_no_notice_push",
        "bridge_notice_respected",
        "a bridge broker forgets to push shutdown notices: its subscribers see a draining instance as serving",
    ),
    (
        "bridge_broker_expires_agents",
        "bridge_agent_liveness",
        "a bridge broker marks an agent down from its own clock a TTL after the agent left it, blind to the brokers that still hear it",
    ),
    (
        "bridge_replicates_clients",
        "bridge_no_client_state",
        "a bridge broker writes its connected clients into the replicated keyspace (so into the log and snapshots)",
    ),
    (
        "flow_commit_before_apply",
        "flow_proposals_applied",
        "flow consensus reports a proposal Committed as soon as it is proposed, before the cluster has it (a proposal decided against still says Committed)",
    ),
    (
        "flow_renew_lost_lock",
        "flow_lock_exclusive",
        "the flow lock's renew of a hold whose lease already ended returns Ok",
    ),
    (
        "flow_events_per_node_order",
        "flow_event_order",
        "a node's own cluster events go to its own subscribers as soon as the put returns, ahead of the log's order",
    ),
    (
        "coo_never_expires",
        "broker_expiry_live",
        "the coo's expiry pass refreshes every broker's last-seen time on each pass, so a silent broker is never expired",
    ),
    (
        "expiry_on_follower_clock",
        "broker_expiry_safe",
        "the leader coo judges a broker's silence from its report's stamp, taken on the clock of the coo that accepted it (a follower since a leader change)",
    ),
    (
        "placement_ignores_replication",
        "partition_placement",
        "the coo places every partition on every registered broker, whatever the topic's replication",
    ),
    (
        "placement_from_scratch",
        "placement_churn",
        "the coo recomputes every placement from the sorted broker list, so one broker more or less moves nearly every partition",
    ),
    (
        "compactor_quits_on_followers",
        "auto_compaction_live",
        "a member's auto-compactor stops for good the first time it finds itself not leading, instead of pausing",
    ),
    (
        "compactor_keeps_nothing",
        "auto_compaction_retention",
        "periodic auto-compaction compacts to the revision it just sampled, not to the one sampled a period ago",
    ),
    (
        "group_partition_twice",
        "group_assignment",
        "the group assignment hands the group's first partition to every member",
    ),
];

/// Whether mutant `name` is on in this run.
#[cfg(madsim)]
pub fn active(name: &str) -> bool {
    use std::sync::OnceLock;
    static SELECTED: OnceLock<Option<String>> = OnceLock::new();
    SELECTED
        .get_or_init(|| std::env::var("SIM_MUTANT").ok().filter(|m| !m.is_empty()))
        .as_deref()
        == Some(name)
}

/// Production builds carry no mutants.
#[cfg(not(madsim))]
#[inline(always)]
pub const fn active(_name: &str) -> bool {
    false
}

/// The expected invariant of a catalogued mutant.
pub fn expected_invariant(name: &str) -> Option<&'static str> {
    CATALOG
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, inv, _)| *inv)
}
