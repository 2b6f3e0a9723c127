//! Lease lapses: a lease nobody keeps alive does expire (etcd's promise, the other
//! direction of `lease_not_early`). A lease last refreshed at `s` must be removed by
//! `s + T` plus a grace for the leader's periodic check and the commit, pushed back
//! by every leader elected in between (a new leader restarts the TTL); in a run with
//! faults, leases left before the heal are judged from the heal on (`heal + leader
//! bound + T + grace`). Only leases due before the run ends are judged.

use super::lease_timeline::{refreshes, removals, ClockFaults, RunTimeline};
use super::Violation;
use crate::sim::trace::TraceEvent;

pub const NAME: &str = "lease_lapses";

/// How long after its TTL runs out a lease's removal may take in a healthy cluster:
/// the leader looks every 500 ms, then commits and applies the expiry.
pub const EXPIRY_GRACE_MS: u64 = 2_000;

/// Checks that every lease left without keep-alives is removed in time;
/// `leader_within_ms` bounds the election after the heal.
pub fn check(events: &[TraceEvent], leader_within_ms: u64) -> Result<(), Violation> {
    let clocks = ClockFaults::from_trace(events);
    let refreshes = refreshes(events);
    let removals = removals(events);
    let timeline = RunTimeline::from_trace(events, leader_within_ms);
    let end_ms = timeline.end_ms;
    for (lease, refreshed) in &refreshes {
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
                related: Vec::new(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::lease_timeline::testing::{at, granted, kept_alive};
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::EventKind;

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
}
