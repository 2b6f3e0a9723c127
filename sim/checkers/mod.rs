//! Invariant checkers, one invariant per file, and [`REGISTRY`]: every checker's
//! name and when it judges — online (each event as it is recorded, failing at the
//! first that breaks the invariant), after healing (progress: a run that did not
//! converge is a liveness failure) or at the end of the run (correctness of the
//! whole history).

pub mod acknowledged_writes;
pub mod applied_within_commit;
pub mod auto_compaction_live;
pub mod auto_compaction_retention;
pub mod bridge_agent_liveness;
pub mod bridge_client_failover;
pub mod bridge_no_client_state;
pub mod bridge_notice_respected;
pub mod bridge_views_committed;
pub mod broker_expiry_live;
pub mod broker_expiry_safe;
pub mod coo_history;
pub mod election_safety;
pub mod fenced_resource_order;
pub mod flow_event_order;
pub mod flow_lock_exclusive;
pub mod flow_proposals_applied;
pub mod flow_state_consistent;
pub mod group_assignment;
pub mod leader_append_only;
pub mod leader_completeness;
pub mod lease_expiry;
pub mod lease_keys_removed;
pub mod lease_lapses;
pub mod lease_not_early;
pub mod lease_timeline;
pub mod library_fencing_token;
pub mod library_leases_released;
pub mod library_lock_safety;
pub mod library_one_lease_per_call;
pub mod library_routing;
pub mod library_set_applied_once;
pub mod library_watch_delivery;
pub mod linearizability;
pub mod liveness;
pub mod local_no_network;
pub mod lock_client_tokens;
pub mod lock_grants;
pub mod lock_single_holder;
pub mod lock_token_order;
pub mod log_matching;
pub mod log_view;
pub mod member_convergence;
pub mod mode_matches_leadership;
pub mod no_double_vote;
pub mod one_active_loop;
pub mod partition_placement;
pub mod persist_before_send;
pub mod placement_churn;
pub mod recovery_durability;
pub mod reports_reach_leader;
pub mod revision_monotonicity;
pub mod single_state_receiver;
pub mod state_machine_safety;
pub mod term_monotonicity;
pub mod topic_views_converge;
pub mod ttl_only_demo;
pub mod watch_order;

use std::fmt;

use strum::{EnumCount, IntoEnumIterator};

use crate::sim::trace::{EventTag, TraceEvent};
use liveness::LivenessBounds;

/// An invariant broken by a specific event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    /// Sequence number of the event that broke it.
    pub event_seq: u64,
    pub message: String,
    /// Earlier events the violation involves (the other leader's election, the
    /// refresh an early expiry ignored, …), by sequence number.
    pub related: Vec<u64>,
}

impl Violation {
    /// Names earlier events the violation involves.
    pub fn with_related(mut self, seqs: impl IntoIterator<Item = u64>) -> Self {
        self.related.extend(seqs);
        self
    }

    /// Every event the violation names: the one that broke it, then the related.
    pub fn events(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.event_seq).chain(self.related.iter().copied())
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at event #{}",
            self.invariant, self.event_seq
        )?;
        for seq in &self.related {
            write!(f, " (with #{seq})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The kinds of event an online checker reads: one bit per `EventTag`. The
/// recorder passes a checker no other kind; a third of a run's events are
/// `Received`, which no checker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads(u64);

const _: () = assert!(EventTag::COUNT <= 64, "Reads has one bit per event kind");

impl Reads {
    /// Every event (a checker that judges elapsed time on any event).
    pub const EVERY: Reads = Reads(u64::MAX);

    /// Only these kinds.
    pub const fn only(tags: &[EventTag]) -> Reads {
        let mut bits = 0;
        let mut i = 0;
        while i < tags.len() {
            bits |= 1 << tags[i] as u64;
            i += 1;
        }
        Reads(bits)
    }

    /// These kinds and `other`'s (a checker's own, and those of a view it keeps).
    pub const fn and(self, other: Reads) -> Reads {
        Reads(self.0 | other.0)
    }

    pub fn covers(self, tag: EventTag) -> bool {
        self.0 & (1 << tag as u64) != 0
    }
}

/// An online checker of one invariant.
pub trait Checker: Send {
    fn name(&self) -> &'static str;
    /// The kinds of event `observe` acts on.
    fn reads(&self) -> Reads {
        Reads::EVERY
    }
    /// Sees the next event; `Err` at the first one that breaks the invariant.
    fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation>;
    /// `observe` if the checker reads this kind of event, as the recorder routes
    /// it. Checkers' unit tests feed events through this, so a kind missing from
    /// `reads` fails them.
    fn observe_read(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        if self.reads().covers(EventTag::from(&event.kind)) {
            self.observe(event)
        } else {
            Ok(())
        }
    }
}

/// The online checkers, with the ones that read each kind of event.
pub struct Routes {
    checkers: Vec<Box<dyn Checker>>,
    /// By `EventTag as usize`: indices into `checkers`, in registry order.
    by_tag: Vec<Vec<usize>>,
}

impl Routes {
    pub fn new(checkers: Vec<Box<dyn Checker>>) -> Self {
        let by_tag = EventTag::iter()
            .map(|tag| {
                (0..checkers.len())
                    .filter(|&i| checkers[i].reads().covers(tag))
                    .collect()
            })
            .collect();
        Routes { checkers, by_tag }
    }

    /// Passes the event to every checker that reads its kind, in registry order;
    /// the first violation stops it.
    pub fn observe(&mut self, event: &TraceEvent) -> Result<(), Violation> {
        let tag = EventTag::from(&event.kind);
        for &i in &self.by_tag[tag as usize] {
            self.checkers[i].observe(event)?;
        }
        Ok(())
    }
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
        related: Vec::new(),
    }
}

/// Builds a violation of `invariant` at the event numbered `seq`.
pub fn violation_at_seq(
    invariant: &'static str,
    seq: u64,
    message: impl Into<String>,
) -> Violation {
    Violation {
        invariant,
        event_seq: seq,
        message: message.into(),
        related: Vec::new(),
    }
}

/// Builds a violation of `invariant` judged on a whole finished run: it names the
/// run's last event.
pub fn violation_at_end(
    invariant: &'static str,
    events: &[TraceEvent],
    message: impl Into<String>,
) -> Violation {
    Violation {
        invariant,
        event_seq: events.last().map_or(0, |e| e.seq),
        message: message.into(),
        related: Vec::new(),
    }
}

/// What the checkers that judge a finished run see.
pub struct RunEnd<'a> {
    pub events: &'a [TraceEvent],
    pub bounds: LivenessBounds,
    /// Members still in the cluster at the end (not failed, removed or lost).
    pub members: &'a [u64],
    /// Brokers alive at the end (empty when the scenario runs none).
    pub brokers: &'a [u64],
    /// The members' periodic auto-compaction period, when it is on.
    pub auto_compaction_period: Option<std::time::Duration>,
}

/// When a checker judges.
pub enum Judges {
    /// Every event as it is recorded; the run stops at the first violation.
    Online(fn() -> Box<dyn Checker>),
    /// Progress after healing, judged first once the run is over.
    Liveness(fn(&RunEnd<'_>) -> Result<(), Violation>),
    /// The whole history, once liveness held; `Ok(Some(line))` is a report to print.
    EndOfRun(fn(&RunEnd<'_>) -> Result<Option<String>, Violation>),
}

/// One checker as scenario files name it (`[checkers] disabled = [...]`).
pub struct Registered {
    pub name: &'static str,
    pub judges: Judges,
}

/// A live broker's report must have been committed within this long before the end.
const MQ_REPORT_WINDOW_MS: u64 = 5_000;

fn online<C: Checker + Default + 'static>() -> Box<dyn Checker> {
    Box::new(C::default())
}

const fn registered(name: &'static str, judges: Judges) -> Registered {
    Registered { name, judges }
}

/// Every checker, in the order they run.
pub const REGISTRY: &[Registered] = &[
    registered(
        library_lock_safety::NAME,
        Judges::Online(online::<library_lock_safety::LibraryLockSafety>),
    ),
    registered(
        library_routing::NAME,
        Judges::Online(online::<library_routing::LibraryRouting>),
    ),
    registered(
        library_watch_delivery::NAME,
        Judges::Online(online::<library_watch_delivery::LibraryWatchDelivery>),
    ),
    registered(
        library_set_applied_once::NAME,
        Judges::Online(online::<library_set_applied_once::LibrarySetAppliedOnce>),
    ),
    registered(
        library_one_lease_per_call::NAME,
        Judges::Online(online::<library_one_lease_per_call::LibraryOneLeasePerCall>),
    ),
    registered(
        library_leases_released::NAME,
        Judges::Online(online::<library_leases_released::LibraryLeasesReleased>),
    ),
    registered(
        library_fencing_token::NAME,
        Judges::Online(online::<library_fencing_token::LibraryFencingToken>),
    ),
    registered(
        bridge_notice_respected::NAME,
        Judges::Online(online::<bridge_notice_respected::BridgeNoticeRespected>),
    ),
    registered(
        acknowledged_writes::NAME,
        Judges::Online(online::<acknowledged_writes::AcknowledgedWrites>),
    ),
    registered(
        election_safety::NAME,
        Judges::Online(online::<election_safety::ElectionSafety>),
    ),
    registered(
        no_double_vote::NAME,
        Judges::Online(online::<no_double_vote::NoDoubleVote>),
    ),
    registered(
        log_matching::NAME,
        Judges::Online(online::<log_matching::LogMatching>),
    ),
    registered(
        leader_append_only::NAME,
        Judges::Online(online::<leader_append_only::LeaderAppendOnly>),
    ),
    registered(
        leader_completeness::NAME,
        Judges::Online(online::<leader_completeness::LeaderCompleteness>),
    ),
    registered(
        state_machine_safety::NAME,
        Judges::Online(online::<state_machine_safety::StateMachineSafety>),
    ),
    registered(
        term_monotonicity::NAME,
        Judges::Online(online::<term_monotonicity::TermMonotonicity>),
    ),
    registered(
        recovery_durability::NAME,
        Judges::Online(online::<recovery_durability::RecoveryDurability>),
    ),
    registered(
        applied_within_commit::NAME,
        Judges::Online(online::<applied_within_commit::AppliedWithinCommit>),
    ),
    registered(
        persist_before_send::NAME,
        Judges::Online(online::<persist_before_send::PersistBeforeSend>),
    ),
    registered(
        one_active_loop::NAME,
        Judges::Online(online::<one_active_loop::OneActiveLoop>),
    ),
    registered(
        single_state_receiver::NAME,
        Judges::Online(online::<single_state_receiver::SingleStateReceiver>),
    ),
    registered(
        mode_matches_leadership::NAME,
        Judges::Online(online::<mode_matches_leadership::ModeMatchesLeadership>),
    ),
    registered(
        local_no_network::NAME,
        Judges::Online(online::<local_no_network::LocalNoNetwork>),
    ),
    registered(
        revision_monotonicity::NAME,
        Judges::Online(online::<revision_monotonicity::RevisionMonotonicity>),
    ),
    registered(
        liveness::NAME,
        Judges::Liveness(|end| liveness::check(end.events, end.bounds)),
    ),
    registered(
        member_convergence::NAME,
        Judges::Liveness(|end| {
            member_convergence::check(end.events, end.bounds.healed_at_ms, end.members)
        }),
    ),
    registered(
        reports_reach_leader::NAME,
        Judges::Liveness(|end| {
            reports_reach_leader::check(end.events, end.brokers, MQ_REPORT_WINDOW_MS)
        }),
    ),
    registered(
        topic_views_converge::NAME,
        Judges::Liveness(|end| topic_views_converge::check(end.events, end.brokers)),
    ),
    registered(
        auto_compaction_live::NAME,
        Judges::Liveness(|end| match end.auto_compaction_period {
            Some(period) => auto_compaction_live::check(
                end.events,
                end.bounds.healed_at_ms,
                end.bounds.leader_within_ms,
                period,
            ),
            None => Ok(()),
        }),
    ),
    registered(
        broker_expiry_live::NAME,
        Judges::Liveness(|end| broker_expiry_live::check(end.events, end.brokers)),
    ),
    registered(
        partition_placement::NAME,
        Judges::Liveness(|end| partition_placement::check(end.events, end.brokers)),
    ),
    registered(
        broker_expiry_safe::NAME,
        Judges::EndOfRun(|end| broker_expiry_safe::check(end.events).map(|()| None)),
    ),
    registered(
        placement_churn::NAME,
        Judges::EndOfRun(|end| placement_churn::check(end.events).map(|()| None)),
    ),
    registered(
        group_assignment::NAME,
        Judges::EndOfRun(|end| group_assignment::check(end.events).map(|()| None)),
    ),
    registered(
        linearizability::NAME,
        Judges::EndOfRun(|end| linearizability::check_trace(end.events).map(|()| None)),
    ),
    registered(
        lock_single_holder::NAME,
        Judges::EndOfRun(|end| lock_single_holder::check(end.events).map(|()| None)),
    ),
    registered(
        lock_token_order::NAME,
        Judges::EndOfRun(|end| lock_token_order::check(end.events).map(|()| None)),
    ),
    registered(
        lock_client_tokens::NAME,
        Judges::EndOfRun(|end| lock_client_tokens::check(end.events).map(|()| None)),
    ),
    registered(
        fenced_resource_order::NAME,
        Judges::EndOfRun(|end| fenced_resource_order::check(end.events).map(|()| None)),
    ),
    registered(
        lease_not_early::NAME,
        Judges::EndOfRun(|end| lease_not_early::check(end.events).map(|()| None)),
    ),
    registered(
        lease_lapses::NAME,
        Judges::EndOfRun(|end| {
            lease_lapses::check(end.events, end.bounds.leader_within_ms).map(|()| None)
        }),
    ),
    registered(
        lease_keys_removed::NAME,
        Judges::EndOfRun(|end| lease_keys_removed::check(end.events).map(|()| None)),
    ),
    registered(
        lease_expiry::NAME,
        Judges::EndOfRun(|end| {
            lease_expiry::check(end.events, end.bounds.leader_within_ms).map(|()| None)
        }),
    ),
    registered(
        auto_compaction_retention::NAME,
        Judges::EndOfRun(|end| match end.auto_compaction_period {
            Some(period) => auto_compaction_retention::check(end.events, period).map(|()| None),
            None => Ok(None),
        }),
    ),
    registered(
        watch_order::NAME,
        Judges::EndOfRun(|end| watch_order::check(end.events).map(|()| None)),
    ),
    registered(
        bridge_views_committed::NAME,
        Judges::EndOfRun(bridge_views_committed::check),
    ),
    registered(
        bridge_agent_liveness::NAME,
        Judges::EndOfRun(bridge_agent_liveness::check),
    ),
    registered(
        bridge_client_failover::NAME,
        Judges::EndOfRun(bridge_client_failover::check),
    ),
    registered(
        bridge_no_client_state::NAME,
        Judges::EndOfRun(bridge_no_client_state::check),
    ),
    registered(
        flow_proposals_applied::NAME,
        Judges::EndOfRun(flow_proposals_applied::check),
    ),
    registered(
        flow_lock_exclusive::NAME,
        Judges::EndOfRun(flow_lock_exclusive::check),
    ),
    registered(
        flow_event_order::NAME,
        Judges::EndOfRun(flow_event_order::check),
    ),
    registered(
        flow_state_consistent::NAME,
        Judges::EndOfRun(flow_state_consistent::check),
    ),
    registered(
        ttl_only_demo::NAME,
        Judges::EndOfRun(|end| {
            ttl_only_demo::check(end.events)
                .transpose()
                .map(|r| r.map(|r| r.line()))
        }),
    ),
];

/// Whether a scenario may name `name`.
pub fn is_registered(name: &str) -> bool {
    REGISTRY.iter().any(|r| r.name == name)
}

fn enabled<'a>(disabled: &'a [String]) -> impl Iterator<Item = &'static Registered> + 'a {
    REGISTRY
        .iter()
        .filter(move |r| !disabled.iter().any(|d| d == r.name))
}

/// Builds the online checkers, minus those `disabled`.
pub fn online_checkers(disabled: &[String]) -> Vec<Box<dyn Checker>> {
    enabled(disabled)
        .filter_map(|r| match r.judges {
            Judges::Online(build) => Some(build()),
            _ => None,
        })
        .collect()
}

/// Judges progress after healing, minus the checkers `disabled`.
pub fn judge_liveness(end: &RunEnd<'_>, disabled: &[String]) -> Result<(), Violation> {
    for r in enabled(disabled) {
        if let Judges::Liveness(check) = r.judges {
            check(end)?;
        }
    }
    Ok(())
}

/// Judges the finished run's whole history, minus the checkers `disabled`; `Ok`
/// carries lines to print (the TTL-only demo's report).
pub fn judge_end_of_run(end: &RunEnd<'_>, disabled: &[String]) -> Result<Vec<String>, Violation> {
    let mut notes = Vec::new();
    for r in enabled(disabled) {
        if let Judges::EndOfRun(check) = r.judges {
            notes.extend(check(end)?);
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_registered_once() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|r| r.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a checker name is registered twice");
    }

    #[test]
    fn online_checkers_are_built_under_their_own_name() {
        for r in REGISTRY {
            if let Judges::Online(build) = r.judges {
                assert_eq!(build().name(), r.name);
            }
        }
        let all = online_checkers(&[]);
        let without = online_checkers(&[term_monotonicity::NAME.to_string()]);
        assert_eq!(without.len() + 1, all.len());
        assert!(without.iter().all(|c| c.name() != term_monotonicity::NAME));
    }
}

/// A finished run of `events` (no liveness bounds, no members), for the
/// end-of-run checkers' tests.
#[cfg(test)]
pub fn end_of(events: &[TraceEvent]) -> RunEnd<'_> {
    RunEnd {
        events,
        bounds: LivenessBounds {
            healed_at_ms: 0,
            leader_within_ms: 0,
            ops_within_ms: 0,
        },
        members: &[],
        brokers: &[],
        auto_compaction_period: None,
    }
}

#[cfg(test)]
pub mod testing {
    //! Builders for hand-made histories.
    use crate::sim::trace::{
        AuditedKey, BridgeEvent, DurableView, EntryMeta, EventKind, FlowEvent, LibraryEvent,
        MsgMeta, Trace, TraceEvent,
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
            revision: Option<i64>,
        ) -> TraceEvent {
            self.push(
                client,
                EventKind::ClientComplete {
                    client,
                    op,
                    outcome: outcome.into(),
                    value: None,
                    revision,
                },
            )
        }

        /// Client 101 puts `a`, then client 102 puts `b`, then client 103 reads
        /// `a` from `key`: a stale read, six events.
        pub fn stale_read(&mut self, key: &str) -> Vec<TraceEvent> {
            let mut events = vec![
                self.invoke_put(101, 1, key, "a"),
                self.complete(101, 1, "ok", None),
                self.invoke_put(102, 2, key, "b"),
                self.complete(102, 2, "ok", None),
            ];
            events.push(self.push(
                103,
                EventKind::ClientInvoke {
                    client: 103,
                    op: 3,
                    kind: "get".into(),
                    key: key.into(),
                    value: None,
                },
            ));
            events.push(self.push(
                103,
                EventKind::ClientComplete {
                    client: 103,
                    op: 3,
                    outcome: "ok".into(),
                    value: Some("a".into()),
                    revision: None,
                },
            ));
            events
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
                    entries: Vec::new(),
                },
            )
        }

        pub fn sent(&mut self, node: u64, msg: MsgMeta, durable: DurableView) -> TraceEvent {
            self.push(node, EventKind::Sent { msg, durable })
        }

        /// Every event so far.
        pub fn events(&self) -> Vec<TraceEvent> {
            self.trace.events.clone()
        }

        pub fn bridge(&mut self, node: u64, event: BridgeEvent) -> TraceEvent {
            self.push(node, EventKind::Bridge(event))
        }

        /// The flow audit's copies of `prefix` on members 1, 2, … and the flow
        /// workload's end; returns every event so far.
        pub fn flow_audit(
            &mut self,
            prefix: &str,
            copies: Vec<Vec<AuditedKey>>,
        ) -> Vec<TraceEvent> {
            for (m, keys) in copies.into_iter().enumerate() {
                let copy = FlowEvent::MemberCopy {
                    member: m as u64 + 1,
                    prefix: prefix.into(),
                    revision: 50,
                    keys,
                    error: None,
                };
                self.push(0, EventKind::Flow(copy));
            }
            self.push(0, EventKind::Flow(FlowEvent::Ended));
            self.events()
        }

        /// Lets `n` ms pass (one filler event per ms).
        pub fn ticks(&mut self, n: usize) {
            for _ in 0..n {
                self.push(
                    0,
                    EventKind::Process {
                        change: "tick".into(),
                    },
                );
            }
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
