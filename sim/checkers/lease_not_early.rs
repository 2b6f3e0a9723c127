//! Lease not early: no lease expires while keep-alives within its TTL succeed
//! (etcd v3 API, "Lease" service; DESIGN.md, "Invariants").
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

use super::lease_timeline::{refreshes, removals, ClockFaults};
use super::Violation;
use crate::sim::trace::TraceEvent;

pub const NAME: &str = "lease_not_early";

/// Checks every expiry against the latest refresh before it.
pub fn check(events: &[TraceEvent]) -> Result<(), Violation> {
    let clocks = ClockFaults::from_trace(events);
    let refreshes = refreshes(events);
    let removals = removals(events);
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
                related: vec![refresh.seq],
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::lease_timeline::testing::{at, granted, kept_alive, removed};
    use crate::sim::checkers::testing::History;
    use crate::sim::trace::EventKind;

    #[test]
    fn fires_when_a_kept_alive_lease_expires() {
        let mut h = History::default();
        let events = vec![
            at(granted(&mut h, 7, 0), 10),
            at(kept_alive(&mut h, 7, 600), 610),
            at(kept_alive(&mut h, 7, 1300), 1310),
            at(removed(&mut h, 7, true, 9), 2500),
        ];
        let v = check(&events).unwrap_err();
        assert_eq!(v.event_seq, events[3].seq);
        assert!(v.message.contains("until at least 3300 ms"), "{v}");
        // The same expiry after the keep-alives stopped for a TTL is fine.
        let mut late = events.clone();
        late[3].time_ms = 3300;
        check(&late).unwrap();
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
        check(&events).unwrap();
        let mut unexcused = events.clone();
        unexcused[1].time_ms = 700;
        assert!(check(&unexcused).is_err());
    }
}
