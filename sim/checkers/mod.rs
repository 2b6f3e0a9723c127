//! Online invariant checkers: each sees every event as it is recorded and fails at
//! the first event that breaks its invariant. One invariant per file.

// --- client library (issue 7) ---
pub mod library_leases_released;
pub mod library_lock_safety;
pub mod library_one_lease_per_call;
pub mod library_routing;
pub mod library_set_applied_once;
pub mod library_watch_delivery;
// --- end client library ---
pub mod acknowledged_writes;
pub mod election_safety;
pub mod leader_append_only;
pub mod leader_completeness;
pub mod lease_correctness;
// --- lease expiry, fencing tokens (issue 18) ---
pub mod lease_expiry;
pub mod lease_timeline;
pub mod library_fencing_token;
// --- end issue 18 ---
pub mod linearizability;
pub mod liveness;
pub mod local_no_network;
pub mod lock_safety;
pub mod log_matching;
pub mod log_view;
pub mod mode_matches_leadership;
pub mod monotonicity;
pub mod mq_convergence;
pub mod no_double_vote;
pub mod one_active_loop;
pub mod persist_before_send;
pub mod revision_monotonicity;
pub mod single_state_receiver;
pub mod state_machine_safety;
pub mod ttl_only_demo;
pub mod watch_order;

use std::fmt;

use crate::sim::trace::TraceEvent;

/// An invariant broken by a specific event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    /// Sequence number of the event that broke it.
    pub event_seq: u64,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at event #{}: {}",
            self.invariant, self.event_seq, self.message
        )
    }
}

/// An online checker of one invariant.
pub trait Checker: Send {
    fn name(&self) -> &'static str;
    /// Sees the next event; `Err` at the first one that breaks the invariant.
    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation>;
}

/// Builds a violation of `invariant` at `event`.
pub fn violation(
    invariant: &'static str,
    event: &TraceEvent,
    message: impl Into<String>,
) -> Violation {
    Violation {
        invariant,
        event_seq: event.seq,
        message: message.into(),
    }
}

/// Names of every online checker, as scenario files may name them.
pub const ONLINE_CHECKERS: &[&str] = &[
    // --- client library (issue 7) ---
    library_lock_safety::NAME,
    library_routing::NAME,
    library_watch_delivery::NAME,
    library_set_applied_once::NAME,
    library_one_lease_per_call::NAME,
    library_leases_released::NAME,
    // --- end client library ---
    library_fencing_token::NAME,
    acknowledged_writes::NAME,
    election_safety::NAME,
    no_double_vote::NAME,
    log_matching::NAME,
    leader_append_only::NAME,
    leader_completeness::NAME,
    state_machine_safety::NAME,
    monotonicity::NAME,
    persist_before_send::NAME,
    one_active_loop::NAME,
    single_state_receiver::NAME,
    mode_matches_leadership::NAME,
    local_no_network::NAME,
    revision_monotonicity::NAME,
];

/// Names of the checkers that judge a whole run once it is over.
pub const END_OF_RUN_CHECKERS: &[&str] = &[
    liveness::NAME,
    linearizability::NAME,
    lock_safety::NAME,
    lease_correctness::NAME,
    lease_expiry::NAME,
    watch_order::NAME,
    ttl_only_demo::NAME,
];

/// Runs the checkers that judge a finished run's coordination workloads (all but
/// liveness), minus those `disabled`; `Ok` carries lines to print (the TTL-only
/// demo's report).
/// `leader_within_ms` bounds the election after the heal (for lease expiry).
pub fn end_of_run(
    events: &[TraceEvent],
    disabled: &[String],
    leader_within_ms: u64,
) -> Result<Vec<String>, Violation> {
    let on = |name: &str| !disabled.iter().any(|d| d == name);
    if on(linearizability::NAME) {
        linearizability::check_trace(events)?;
    }
    if on(lock_safety::NAME) {
        lock_safety::check(events)?;
    }
    if on(lease_correctness::NAME) {
        lease_correctness::check(events, leader_within_ms)?;
    }
    if on(lease_expiry::NAME) {
        lease_expiry::check(events, leader_within_ms)?;
    }
    if on(watch_order::NAME) {
        watch_order::check(events)?;
    }
    let mut notes = Vec::new();
    if on(ttl_only_demo::NAME) {
        if let Some(report) = ttl_only_demo::check(events) {
            notes.push(report?.line());
        }
    }
    Ok(notes)
}

/// Builds the online checkers, minus those `disabled`.
pub fn online_checkers(disabled: &[String]) -> Vec<Box<dyn Checker>> {
    let all: Vec<Box<dyn Checker>> = vec![
        // --- client library (issue 7) ---
        Box::new(library_lock_safety::LibraryLockSafety::default()),
        Box::new(library_routing::LibraryRouting::default()),
        Box::new(library_watch_delivery::LibraryWatchDelivery::default()),
        Box::new(library_set_applied_once::LibrarySetAppliedOnce::default()),
        Box::new(library_one_lease_per_call::LibraryOneLeasePerCall::default()),
        Box::new(library_leases_released::LibraryLeasesReleased::default()),
        // --- end client library ---
        Box::new(library_fencing_token::LibraryFencingToken::default()),
        Box::new(acknowledged_writes::AcknowledgedWrites::default()),
        Box::new(election_safety::ElectionSafety::default()),
        Box::new(no_double_vote::NoDoubleVote::default()),
        Box::new(log_matching::LogMatching::default()),
        Box::new(leader_append_only::LeaderAppendOnly::default()),
        Box::new(leader_completeness::LeaderCompleteness::default()),
        Box::new(state_machine_safety::StateMachineSafety::default()),
        Box::new(monotonicity::Monotonicity::default()),
        Box::new(persist_before_send::PersistBeforeSend::default()),
        Box::new(one_active_loop::OneActiveLoop::default()),
        Box::new(single_state_receiver::SingleStateReceiver::default()),
        Box::new(mode_matches_leadership::ModeMatchesLeadership::default()),
        Box::new(local_no_network::LocalNoNetwork::default()),
        Box::new(revision_monotonicity::RevisionMonotonicity::default()),
    ];
    all.into_iter()
        .filter(|c| !disabled.iter().any(|d| d == c.name()))
        .collect()
}

#[cfg(test)]
pub mod testing {
    //! Builders for hand-made histories.
    use crate::sim::trace::{
        DurableView, EntryMeta, EventKind, LibraryEvent, MsgMeta, Trace, TraceEvent,
    };

    /// A library event seen by client `node`, at sequence number and time `seq`.
    pub fn library_event(seq: u64, node: u64, event: LibraryEvent) -> TraceEvent {
        TraceEvent {
            seq,
            time_ms: seq,
            node,
            kind: EventKind::Library(event),
        }
    }

    #[derive(Default)]
    pub struct History {
        trace: Trace,
        time_ms: u64,
    }

    impl History {
        pub fn push(&mut self, node: u64, kind: EventKind) -> TraceEvent {
            self.time_ms += 1;
            self.trace.push(self.time_ms, node, kind).clone()
        }

        pub fn role(&mut self, node: u64, role: &str, term: u64, leader: u64) -> TraceEvent {
            self.push(
                node,
                EventKind::Role {
                    role: role.into(),
                    term,
                    leader,
                },
            )
        }

        pub fn persist(
            &mut self,
            node: u64,
            hs: Option<(u64, u64, u64)>,
            entries: &[(u64, u64, u64)],
        ) -> TraceEvent {
            self.push(
                node,
                EventKind::Persisted {
                    hard_state: hs,
                    entries: entries
                        .iter()
                        .map(|&(index, term, digest)| EntryMeta {
                            index,
                            term,
                            digest,
                        })
                        .collect(),
                    synced: true,
                },
            )
        }

        pub fn applied(&mut self, node: u64, index: u64, term: u64, digest: u64) -> TraceEvent {
            self.push(
                node,
                EventKind::Applied {
                    entry: EntryMeta {
                        index,
                        term,
                        digest,
                    },
                    command: None,
                },
            )
        }

        pub fn applied_command(&mut self, node: u64, index: u64, command: &str) -> TraceEvent {
            self.push(
                node,
                EventKind::Applied {
                    entry: EntryMeta {
                        index,
                        term: 1,
                        digest: index,
                    },
                    command: Some(command.into()),
                },
            )
        }

        pub fn invoke_put(&mut self, client: u64, op: u64, key: &str, value: &str) -> TraceEvent {
            self.push(
                client,
                EventKind::ClientInvoke {
                    client,
                    op,
                    kind: "put".into(),
                    key: key.into(),
                    value: Some(value.into()),
                },
            )
        }

        pub fn complete(
            &mut self,
            client: u64,
            op: u64,
            outcome: &str,
            index: Option<u64>,
        ) -> TraceEvent {
            self.push(
                client,
                EventKind::ClientComplete {
                    client,
                    op,
                    outcome: outcome.into(),
                    value: None,
                    index,
                },
            )
        }

        pub fn recovered(
            &mut self,
            node: u64,
            term: u64,
            vote: u64,
            commit: u64,
            last_index: u64,
            applied: u64,
        ) -> TraceEvent {
            self.push(
                node,
                EventKind::Recovered {
                    term,
                    vote,
                    commit,
                    snapshot_index: 0,
                    snapshot_term: 0,
                    last_index,
                    applied,
                },
            )
        }

        pub fn sent(&mut self, node: u64, msg: MsgMeta, durable: DurableView) -> TraceEvent {
            self.push(node, EventKind::Sent { msg, durable })
        }
    }

    pub fn msg(kind: &'static str, from: u64, to: u64, term: u64) -> MsgMeta {
        MsgMeta {
            kind,
            from,
            to,
            term,
            log_term: 0,
            index: 0,
            commit: 0,
            reject: false,
            last_entry: None,
        }
    }
}
