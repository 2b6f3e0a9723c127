//! Lease correctness: no lease expires while keep-alives within its TTL succeed, and
//! once a lease is gone (expired or revoked) its keys are gone for every later
//! linearizable read (etcd v3 API, "Lease" service; DESIGN.md, "Invariants").
//!
//! Judged in true (simulated) time once the run is over. A grant or keep-alive sent
//! at `s` and answered with TTL `T` was applied by a confirmed leader no earlier than
//! `s`, and a new leader restarts the full TTL, so the lease may expire no earlier
//! than `s + T` — as long as the deciding leader's clock runs true. Clock faults are
//! allowed for: within a fast drift of rate ρ the TTL may run out after `T / ρ`, and
//! a forward jump of `J` brings expiry `J` earlier. The checker does not know which
//! node decided, so it credits the worst clock fault of any node in the window (see
//! [`ClockFaults`]); scenarios without clock faults are judged exactly.
//!
//! Expiry is judged at the first node that applied the removal (the decision came
//! before it), so the check never blames a correct run.
//!
//! The other direction is etcd's promise too: a lease nobody keeps alive does expire.
//! A lease last refreshed at `s` must be removed by `s + T` plus a grace for the
//! leader's periodic check and the commit, pushed back by every leader elected in
//! between (a new leader restarts the TTL); in a run with faults, leases left before
//! the heal are judged from the heal on (`heal + leader bound + T + grace`). Only
//! leases due before the run ends are judged.

use std::collections::BTreeMap;

use super::lease_timeline::{ClockFaults, Removal, RunTimeline};
use super::Violation;
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "lease_correctness";

/// How long after its TTL runs out a lease's removal may take in a healthy cluster:
/// the leader looks every 500 ms, then commits and applies the expiry.
pub const EXPIRY_GRACE_MS: u64 = 2_000;

/// A moment a lease's TTL restarted at the latest: a grant or a keep-alive answered `ok`.
struct Refresh {
    sent_ms: u64,
    ttl_ms: u64,
    client: u64,
    seq: u64,
}

/// Checks a finished run's leases; `leader_within_ms` bounds the election after
/// the heal.
pub fn check(events: &[TraceEvent], leader_within_ms: u64) -> Result<(), Violation> {
    let clocks = ClockFaults::from_trace(events);
    let mut refreshes: BTreeMap<i64, Vec<Refresh>> = BTreeMap::new();
    let mut removals: BTreeMap<i64, Removal> = BTreeMap::new();
    for e in events {
        match &e.kind {
            EventKind::LeaseGranted {
                client,
                lease,
                ttl_ms,
                sent_ms,
            } => refreshes.entry(*lease).or_default().push(Refresh {
                sent_ms: *sent_ms,
                ttl_ms: *ttl_ms,
                client: *client,
                seq: e.seq,
            }),
            EventKind::KeepAlive {
                client,
                lease,
                sent_ms,
                outcome,
                ttl_ms,
            } if outcome == "ok" && *ttl_ms > 0 => {
                refreshes.entry(*lease).or_default().push(Refresh {
                    sent_ms: *sent_ms,
                    ttl_ms: *ttl_ms,
                    client: *client,
                    seq: e.seq,
                })
            }
            EventKind::LeaseRemoved { .. } => {
                let (lease, removal) = Removal::from_event(e).expect("a removal");
                removals.entry(lease).or_insert(removal);
            }
            _ => {}
        }
    }
    for (lease, removal) in removals.iter().filter(|(_, r)| r.expired) {
        let latest = refreshes
            .get(lease)
            .into_iter()
            .flatten()
            .filter(|r| r.sent_ms <= removal.time_ms)
            .max_by_key(|r| r.sent_ms);
        let Some(refresh) = latest else { continue };
        let allowed_ms =
            clocks.shortest_ttl_ms(refresh.ttl_ms, refresh.sent_ms, removal.time_ms, None);
        if removal.time_ms < refresh.sent_ms + allowed_ms {
            return Err(Violation {
                invariant: NAME,
                event_seq: removal.seq,
                message: format!(
                    "lease {lease:x} expired at {} ms (applied first on node {}, revision {}), but client {}'s keep-alive sent at {} ms succeeded with TTL {} ms: it must live until at least {} ms",
                    removal.time_ms,
                    removal.node,
                    removal.revision,
                    refresh.client,
                    refresh.sent_ms,
                    refresh.ttl_ms,
                    refresh.sent_ms + allowed_ms
                ),
            });
        }
    }
    check_lapsed_leases_expire(events, &refreshes, &removals, &clocks, leader_within_ms)?;
    for e in events {
        let EventKind::LeaseKeyRead {
            client,
            lease,
            key,
            invoked_ms,
            present: true,
            revision,
        } = &e.kind
        else {
            continue;
        };
        let Some(removal) = removals.get(lease) else {
            continue;
        };
        if *invoked_ms > removal.time_ms || *revision >= removal.revision {
            let how = if removal.expired {
                "expired"
            } else {
                "revoked"
            };
            return Err(Violation {
                invariant: NAME,
                event_seq: e.seq,
                message: format!(
                    "client {client} read key {key} of lease {lease:x} at revision {revision} (invoked at {invoked_ms} ms), but the lease was {how} at revision {} (applied on node {} at {} ms) and its keys deleted",
                    removal.revision, removal.node, removal.time_ms
                ),
            });
        }
    }
    Ok(())
}

/// Every lease left without keep-alives is removed in time (see the module doc).
fn check_lapsed_leases_expire(
    events: &[TraceEvent],
    refreshes: &BTreeMap<i64, Vec<Refresh>>,
    removals: &BTreeMap<i64, Removal>,
    clocks: &ClockFaults,
    leader_within_ms: u64,
) -> Result<(), Violation> {
    let timeline = RunTimeline::from_trace(events, leader_within_ms);
    let end_ms = timeline.end_ms;
    for (lease, refreshed) in refreshes {
        if removals.contains_key(lease) {
            continue;
        }
        let Some(last) = refreshed.iter().max_by_key(|r| r.sent_ms) else {
            continue;
        };
        let ttl = last.ttl_ms;
        let due_ms =
            timeline.lapse_due_ms(last.sent_ms, ttl, EXPIRY_GRACE_MS) + clocks.backward_ms();
        if due_ms <= end_ms {
            return Err(Violation {
                invariant: NAME,
                event_seq: last.seq,
                message: format!(
                    "lease {lease:x} (TTL {ttl} ms) was last kept alive by client {} at {} ms and was never removed: it was due by {due_ms} ms, and the run went on until {end_ms} ms",
                    last.client, last.sent_ms
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::testing::History;

    fn granted(h: &mut History, lease: i64, sent_ms: u64) -> TraceEvent {
        h.push(
            300,
            EventKind::LeaseGranted {
                client: 300,
                lease,
                ttl_ms: 2000,
                sent_ms,
            },
        )
    }

    fn kept_alive(h: &mut History, lease: i64, sent_ms: u64) -> TraceEvent {
        h.push(
            300,
            EventKind::KeepAlive {
                client: 300,
                lease,
                sent_ms,
                outcome: "ok".into(),
                ttl_ms: 2000,
            },
        )
    }

    fn removed(h: &mut History, lease: i64, expired: bool, revision: i64) -> TraceEvent {
        h.push(
            2,
            EventKind::LeaseRemoved {
                lease,
                expired,
                revision,
            },
        )
    }

    fn at(mut e: TraceEvent, time_ms: u64) -> TraceEvent {
        e.time_ms = time_ms;
        e
    }

    #[test]
    fn fires_when_a_kept_alive_lease_expires() {
        let mut h = History::default();
        let events = vec![
            at(granted(&mut h, 7, 0), 10),
            at(kept_alive(&mut h, 7, 600), 610),
            at(kept_alive(&mut h, 7, 1300), 1310),
            at(removed(&mut h, 7, true, 9), 2500),
        ];
        let v = check(&events, 0).unwrap_err();
        assert_eq!(v.event_seq, events[3].seq);
        assert!(v.message.contains("until at least 3300 ms"), "{v}");
        // The same expiry after the keep-alives stopped for a TTL is fine.
        let mut late = events.clone();
        late[3].time_ms = 3300;
        check(&late, 0).unwrap();
    }

    #[test]
    fn a_forward_clock_jump_excuses_an_early_expiry() {
        let mut h = History::default();
        let jump = h.push(
            0,
            EventKind::Fault {
                action: r#"{"action":"clock_jump","node":2,"delta_ms":1500}"#.into(),
            },
        );
        let events = vec![
            at(granted(&mut h, 7, 0), 10),
            at(jump, 500),
            at(removed(&mut h, 7, true, 9), 600),
        ];
        check(&events, 0).unwrap();
        let mut unexcused = events.clone();
        unexcused[1].time_ms = 700;
        assert!(check(&unexcused, 0).is_err());
    }

    #[test]
    fn fires_when_a_lapsed_lease_never_expires() {
        let mut h = History::default();
        let lapsed = vec![
            at(granted(&mut h, 7, 0), 10),
            at(kept_alive(&mut h, 7, 600), 610),
            at(h.role(1, "follower", 2, 1), 9_000),
        ];
        let v = check(&lapsed, 0).unwrap_err();
        assert_eq!(v.event_seq, lapsed[1].seq);
        assert!(v.message.contains("due by 4600 ms"), "{v}");
        // A leader elected before it ran out restarts the TTL: not due yet.
        let mut reelected = lapsed.clone();
        reelected.insert(2, at(h.role(2, "leader", 3, 2), 2_500));
        reelected.last_mut().unwrap().time_ms = 6_000;
        check(&reelected, 0).unwrap();
        // Faults before the heal push the judgement past the heal.
        let faulty = vec![
            lapsed[0].clone(),
            lapsed[1].clone(),
            at(
                h.push(
                    0,
                    EventKind::Fault {
                        action: "kill".into(),
                    },
                ),
                1_000,
            ),
            at(
                h.push(
                    0,
                    EventKind::Fault {
                        action: "heal everything".into(),
                    },
                ),
                5_000,
            ),
            at(h.role(1, "follower", 2, 1), 9_000),
        ];
        check(&faulty, 1_000).unwrap();
        let mut later = faulty.clone();
        later.last_mut().unwrap().time_ms = 11_000;
        assert!(check(&later, 1_000).is_err());
    }

    #[test]
    fn fires_when_a_removed_leases_key_is_still_read() {
        let mut h = History::default();
        let read = |h: &mut History, invoked_ms: u64, revision: i64| {
            h.push(
                300,
                EventKind::LeaseKeyRead {
                    client: 300,
                    lease: 7,
                    key: "lease/7/0".into(),
                    invoked_ms,
                    present: true,
                    revision,
                },
            )
        };
        let removal = at(removed(&mut h, 7, false, 12), 1000);
        let before = read(&mut h, 900, 11);
        check(&[removal.clone(), before], 0).unwrap();
        let after = read(&mut h, 1100, 11);
        let v = check(&[removal.clone(), after], 0).unwrap_err();
        assert!(v.message.contains("revoked at revision 12"), "{v}");
        let newer = read(&mut h, 900, 12);
        assert!(check(&[removal, newer], 0).is_err());
    }
}
