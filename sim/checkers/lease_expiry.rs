//! Lease expiry: no lease is expired earlier than its TTL after the leader last
//! restarted it, and a lease nobody renews any more is removed within its TTL and a
//! stated grace (etcd v3 API, Lease service: "LeaseGrant creates a lease which
//! expires if the server does not receive a keepAlive within a given time to live
//! period"; `src/coord/lessor.rs`).
//!
//! Unlike `lease_not_early` and `lease_lapses`, which judge the etcd lease workload
//! from its clients' keep-alives, this judges every lease of a run — the client library's
//! lock guards, registrations and config sessions included — from the server side:
//! the leader's lessor reports each time it (re)starts a lease's TTL (`LeaseRenewed`:
//! a keep-alive it answered, its own election, its first sight of a new lease), the
//! grant and the removal are applied log entries, and the `LeaseExpired` entry names
//! the member that decided.
//!
//! **Early.** An expiry first applied at `x` must come at least a TTL after the
//! latest restart before it that its decider could know of: the `LeaseExpired`
//! entry's term is the one its decider led, and an entry of a term commits only if
//! a majority took it before a later term's election, so restarts by later leaders
//! (who restart every TTL on election, possibly after the decision) do not count. A
//! restart reported by the leader of term `t` after a leader of a later term was
//! elected counts as of that election (its ReadIndex round proved the leadership
//! before the quorum moved on). Clock faults on the deciding member are credited as
//! `lease_not_early` credits them ([`ClockFaults`]): a forward jump in between by
//! its size, a fast drift by its rate.
//!
//! **Late.** A lease whose TTL last restarted at `r` (its grant, or the latest
//! report) must be gone — expired or revoked — by `r + TTL + LATE_GRACE_MS`, where
//! every election before that restarts the count, and, in a run with faults, a
//! lease last restarted before the heal is counted from the heal plus the
//! scenario's election bound ([`RunTimeline::lapse_due_ms`]). A lease whose deadline
//! lies past the end of the run is not judged.

use std::collections::BTreeMap;

use coordlab::coord::leases::MIN_TTL_SECS;
use coordlab::coord::lessor::EXPIRY_CHECK;

use super::lease_timeline::{ClockFaults, Removal, RunTimeline};
use super::library_one_lease_per_call::lease_grant;
use super::Violation;
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "lease_expiry";

/// How long after its TTL ran out a lapsed lease may take to be removed on a
/// healthy cluster: the leader's lessor looks every `EXPIRY_CHECK` (500 ms), so it
/// sees the deadline at most that late; after an election the new leader restarts
/// every TTL at its lessor's next look, another `EXPIRY_CHECK` after the `Role`
/// event the count starts from; and proposing, committing and applying the
/// `LeaseExpired` entry at the first member takes a few message delays, for which
/// 1 s is ample on a healed cluster.
pub const LATE_GRACE_MS: u64 = 2 * EXPIRY_CHECK.as_millis() as u64 + 1_000;

/// The lease and deciding member of an applied `etcd lease expired <hex> by <id>`
/// command (as the harness's observer describes it).
pub fn lease_expired(command: &str) -> Option<(i64, u64)> {
    let (hex, by) = command
        .strip_prefix("etcd lease expired ")?
        .split_once(" by ")?;
    Some((i64::from_str_radix(hex, 16).ok()?, by.parse().ok()?))
}

/// A moment a lease's TTL restarted: a `LeaseRenewed` report, or the grant.
#[derive(Debug, Clone, Copy)]
struct Restart {
    time_ms: u64,
    ttl_ms: u64,
    /// The reporting leader's term (None: the grant).
    term: Option<u64>,
    node: u64,
    seq: u64,
}

#[derive(Default)]
struct Leases {
    restarts: BTreeMap<i64, Vec<Restart>>,
    removals: BTreeMap<i64, Removal>,
    /// Lease → (member, term) that proposed the `LeaseExpired` entry removing it.
    deciders: BTreeMap<i64, (u64, u64)>,
}

impl Leases {
    fn from_trace(events: &[TraceEvent]) -> Self {
        let mut leases = Leases::default();
        for e in events {
            match &e.kind {
                EventKind::Applied {
                    entry,
                    command: Some(command),
                } => {
                    if let Some((lease, ttl_secs)) = lease_grant(command) {
                        let restarts = leases.restarts.entry(lease).or_default();
                        if restarts.is_empty() {
                            restarts.push(Restart {
                                time_ms: e.time_ms,
                                ttl_ms: ttl_secs.max(MIN_TTL_SECS as u64) * 1000,
                                term: None,
                                node: e.node,
                                seq: e.seq,
                            });
                        }
                    } else if let Some((lease, by)) = lease_expired(command) {
                        // The entry's term is the one its decider led.
                        leases.deciders.entry(lease).or_insert((by, entry.term));
                    }
                }
                EventKind::LeaseRenewed {
                    lease,
                    ttl_ms,
                    term,
                    ..
                } => leases.restarts.entry(*lease).or_default().push(Restart {
                    time_ms: e.time_ms,
                    ttl_ms: *ttl_ms,
                    term: Some(*term),
                    node: e.node,
                    seq: e.seq,
                }),
                EventKind::LeaseRemoved { .. } => {
                    let (lease, removal) = Removal::from_event(e).expect("a removal");
                    leases.removals.entry(lease).or_insert(removal);
                }
                _ => {}
            }
        }
        leases
    }
}

fn describe(r: &Restart) -> String {
    match r.term {
        Some(term) => format!("restarted by leader {} of term {term}", r.node),
        None => format!("granted (applied first on node {})", r.node),
    }
}

/// Checks a finished run's leases; `leader_within_ms` bounds the election after
/// the heal.
pub fn check(events: &[TraceEvent], leader_within_ms: u64) -> Result<(), Violation> {
    let leases = Leases::from_trace(events);
    let clocks = ClockFaults::from_trace(events);
    let timeline = RunTimeline::from_trace(events, leader_within_ms);
    for (lease, removal) in leases.removals.iter().filter(|(_, r)| r.expired) {
        check_not_early(*lease, removal, &leases, &clocks, &timeline)?;
    }
    for (lease, restarts) in &leases.restarts {
        check_not_late(*lease, restarts, leases.removals.get(lease), &timeline)?;
    }
    Ok(())
}

/// An expiry comes at least a TTL after the latest restart before it.
fn check_not_early(
    lease: i64,
    removal: &Removal,
    leases: &Leases,
    clocks: &ClockFaults,
    timeline: &RunTimeline,
) -> Result<(), Violation> {
    let decided = leases.deciders.get(&lease).copied();
    // The decision was made in its entry's term (an entry of a term commits only
    // if a majority took it before a later term's election): a later leader's
    // restarts came after it.
    let known = |r: &Restart| match (r.term, decided) {
        (Some(term), Some((_, decided_term))) => term <= decided_term,
        _ => true,
    };
    // Each restart as of when it counts: a deposed leader's, as of its successor's
    // election.
    let counted = |r: &Restart| match r.term.and_then(|t| timeline.superseded_ms(t)) {
        Some(superseded) if superseded < r.time_ms => superseded,
        _ => r.time_ms,
    };
    let latest = leases
        .restarts
        .get(&lease)
        .into_iter()
        .flatten()
        .filter(|r| r.time_ms <= removal.time_ms && known(r))
        .max_by_key(|r| (counted(r), r.seq));
    let Some(restart) = latest else {
        return Ok(());
    };
    let from_ms = counted(restart);
    let decider = decided.map(|(member, _)| member);
    let allowed_ms = clocks.shortest_ttl_ms(restart.ttl_ms, from_ms, removal.time_ms, decider);
    if removal.time_ms >= from_ms + allowed_ms {
        return Ok(());
    }
    Err(Violation {
        invariant: NAME,
        event_seq: removal.seq,
        message: format!(
            "lease {lease:x} expired at {} ms (decided by {}, applied first on node {} at revision {}), but its {} ms TTL was {} at {} ms (event #{}): it must live until at least {} ms",
            removal.time_ms,
            decided.map_or("an unknown member".to_string(), |(d, t)| format!(
                "member {d} in term {t}"
            )),
            removal.node,
            removal.revision,
            restart.ttl_ms,
            describe(restart),
            restart.time_ms,
            restart.seq,
            from_ms + allowed_ms,
        ),
        related: vec![restart.seq],
    })
}

/// A lease is gone within its TTL and the grace after its last restart.
fn check_not_late(
    lease: i64,
    restarts: &[Restart],
    removal: Option<&Removal>,
    timeline: &RunTimeline,
) -> Result<(), Violation> {
    let Some(last) = restarts.iter().max_by_key(|r| (r.time_ms, r.seq)) else {
        return Ok(());
    };
    let due_ms = timeline.lapse_due_ms(last.time_ms, last.ttl_ms, LATE_GRACE_MS);
    let (seq, how) = match removal {
        Some(r) if r.time_ms <= due_ms => return Ok(()),
        Some(r) => (
            r.seq,
            format!(
                "was {} only at {} ms (revision {})",
                if r.expired { "expired" } else { "revoked" },
                r.time_ms,
                r.revision
            ),
        ),
        None if due_ms > timeline.end_ms => return Ok(()),
        None => (
            last.seq,
            format!(
                "was never removed (the run went on until {} ms)",
                timeline.end_ms
            ),
        ),
    };
    Err(Violation {
        invariant: NAME,
        event_seq: seq,
        message: format!(
            "lease {lease:x} (TTL {} ms) was last {} at {} ms and {how}: nobody renewed it, so it was due by {due_ms} ms",
            last.ttl_ms,
            describe(last),
            last.time_ms,
        ),
        related: if seq == last.seq { Vec::new() } else { vec![last.seq] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::EntryMeta;

    fn at(mut e: TraceEvent, time_ms: u64) -> TraceEvent {
        e.time_ms = time_ms;
        e
    }

    fn applied(h: &mut History, node: u64, command: String) -> TraceEvent {
        applied_in(h, node, 1, command)
    }

    /// An applied entry of `term`.
    fn applied_in(h: &mut History, node: u64, term: u64, command: String) -> TraceEvent {
        h.push(
            node,
            EventKind::Applied {
                entry: EntryMeta {
                    index: 1,
                    term,
                    digest: 1,
                },
                command: Some(command),
            },
        )
    }

    fn renewed(h: &mut History, node: u64, lease: i64, term: u64) -> TraceEvent {
        h.push(
            node,
            EventKind::LeaseRenewed {
                lease,
                ttl_ms: 2_000,
                term,
                reason: "keep-alive".into(),
            },
        )
    }

    fn removed(h: &mut History, lease: i64, expired: bool) -> TraceEvent {
        h.push(
            2,
            EventKind::LeaseRemoved {
                lease,
                expired,
                revision: 9,
            },
        )
    }

    /// Leader 1 grants lease a at 100 ms and renews it at 1000 ms; lease b is
    /// granted at 200 ms and revoked at 900 ms.
    fn history(h: &mut History) -> Vec<TraceEvent> {
        vec![
            at(h.role(1, "leader", 1, 1), 10),
            at(applied(h, 1, "etcd lease grant a ttl=2".into()), 100),
            at(applied(h, 1, "etcd lease grant b ttl=2".into()), 200),
            at(removed(h, 0xb, false), 900),
            at(renewed(h, 1, 0xa, 1), 1_000),
        ]
    }

    fn expired(h: &mut History, events: &mut Vec<TraceEvent>, time_ms: u64) {
        events.push(at(
            applied(h, 1, "etcd lease expired a by 1".into()),
            time_ms,
        ));
        events.push(at(removed(h, 0xa, true), time_ms));
    }

    #[test]
    fn an_expiry_between_ttl_and_the_grace_passes() {
        let mut h = History::default();
        let mut events = history(&mut h);
        expired(&mut h, &mut events, 3_400);
        events.push(at(h.role(2, "follower", 1, 1), 20_000));
        check(&events, 5_000).unwrap();
        assert_eq!(lease_expired("etcd lease expired 1f by 3"), Some((0x1f, 3)));
    }

    #[test]
    fn fires_on_an_early_expiry() {
        let mut h = History::default();
        let mut events = history(&mut h);
        expired(&mut h, &mut events, 2_000);
        let v = check(&events, 5_000).unwrap_err();
        assert_eq!(v.event_seq, events.last().unwrap().seq);
        assert!(v.message.contains("until at least 3000 ms"), "{v}");
        // A forward jump of the deciding member's clock excuses it; another's does not.
        let jump = |h: &mut History, node: u64| {
            at(
                h.push(
                    0,
                    EventKind::Fault {
                        action: format!(
                            r#"{{"action":"clock_jump","node":{node},"delta_ms":1000}}"#
                        ),
                    },
                ),
                1_500,
            )
        };
        let mut excused = events.clone();
        excused.insert(5, jump(&mut h, 1));
        check(&excused, 5_000).unwrap();
        let mut elsewhere = events.clone();
        elsewhere.insert(5, jump(&mut h, 3));
        assert!(check(&elsewhere, 5_000).is_err());
    }

    #[test]
    fn a_deposed_leaders_late_renewal_counts_as_of_the_next_election() {
        let mut h = History::default();
        let mut events = history(&mut h);
        // Leader 2 is elected in term 2 at 1500 ms and restarts lease a at 1800
        // ms; the deposed leader 1 reports a renewal (confirmed before) at 1900 ms.
        events.push(at(h.role(2, "leader", 2, 2), 1_500));
        events.push(at(renewed(&mut h, 2, 0xa, 2), 1_800));
        events.push(at(renewed(&mut h, 1, 0xa, 1), 1_900));
        events.push(at(
            applied_in(&mut h, 2, 2, "etcd lease expired a by 2".into()),
            3_850,
        ));
        events.push(at(removed(&mut h, 0xa, true), 3_850));
        check(&events, 5_000).unwrap();
        events.last_mut().unwrap().time_ms = 3_700;
        assert!(check(&events, 5_000).is_err());
    }

    #[test]
    fn an_expiry_decided_before_an_election_is_not_held_to_the_new_leaders_restart() {
        let mut h = History::default();
        let mut events = history(&mut h);
        // Leader 1 decides at 3000 ms, in term 1; leader 2, elected in term 2 at
        // 3100 ms, restarts every TTL at 3200 ms, then commits the term-1 entry.
        events.push(at(h.role(2, "leader", 2, 2), 3_100));
        events.push(at(renewed(&mut h, 2, 0xa, 2), 3_200));
        events.push(at(
            applied_in(&mut h, 2, 1, "etcd lease expired a by 1".into()),
            3_400,
        ));
        events.push(at(removed(&mut h, 0xa, true), 3_400));
        check(&events, 5_000).unwrap();
        // Had leader 2 decided it, it would have been early.
        let decision = events.len() - 2;
        events[decision] = at(
            applied_in(&mut h, 2, 2, "etcd lease expired a by 2".into()),
            3_400,
        );
        let v = check(&events, 5_000).unwrap_err();
        assert!(v.message.contains("member 2 in term 2"), "{v}");
    }

    #[test]
    fn fires_on_a_late_or_missing_expiry() {
        let mut h = History::default();
        let mut events = history(&mut h);
        expired(&mut h, &mut events, 5_100);
        let v = check(&events, 5_000).unwrap_err();
        assert_eq!(v.event_seq, events.last().unwrap().seq);
        assert!(v.message.contains("was expired only at 5100 ms"), "{v}");
        assert!(v.message.contains("due by 5000 ms"), "{v}");
        // Never removed, and the run went on past the deadline.
        let mut never = history(&mut h);
        never.push(at(h.role(2, "follower", 1, 1), 4_900));
        check(&never, 5_000).unwrap();
        never.last_mut().unwrap().time_ms = 5_000;
        let v = check(&never, 5_000).unwrap_err();
        assert!(v.message.contains("was never removed"), "{v}");
        // An election before it was due restarts the count.
        let mut reelected = never.clone();
        reelected.insert(5, at(h.role(2, "leader", 2, 2), 2_500));
        check(&reelected, 5_000).unwrap();
    }

    #[test]
    fn fires_on_one_early_and_one_late_expiry_in_one_history() {
        let mut h = History::default();
        let mut events = history(&mut h);
        // Lease c: granted at 300 ms, expired at 1200 ms (early).
        events.insert(
            3,
            at(applied(&mut h, 1, "etcd lease grant c ttl=2".into()), 300),
        );
        events.push(at(
            applied(&mut h, 1, "etcd lease expired c by 1".into()),
            1_200,
        ));
        events.push(at(removed(&mut h, 0xc, true), 1_200));
        // Lease a: never removed, the run lasts until 9000 ms (late).
        events.push(at(h.role(2, "follower", 1, 1), 9_000));
        let v = check(&events, 5_000).unwrap_err();
        assert!(v.message.starts_with("lease c expired at 1200 ms"), "{v}");
        // Without the early one, the late one fires.
        events.retain(|e| !matches!(&e.kind, EventKind::LeaseRemoved { lease: 0xc, .. }));
        let v = check(&events, 5_000).unwrap_err();
        assert!(v.message.starts_with("lease a (TTL 2000 ms)"), "{v}");
        assert!(v.message.contains("never removed"), "{v}");
    }
}
