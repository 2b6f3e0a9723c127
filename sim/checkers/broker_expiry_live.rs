//! Broker expiry is live: a broker that stopped reporting for good (crashed, or its
//! host lost) is expired within `BROKER_TIMEOUT` + [`LIVE_GRACE_MS`] of its last
//! accepted report, counted once leadership is stable after healing (seed 000: the
//! coo expires silent brokers so that their partitions move; `Coo::run_broker_expiry`).
//!
//! Judged after healing, for the brokers that reported in the run and are not alive
//! at its end. Leadership is stable from the later of the heal and the run's last
//! election: a new leader starts every broker's count afresh at its first expiry
//! pass, so the count starts there if the report is older. Backward jumps of the
//! final leader's clock after its count started are added (they delay it as much;
//! the count may have started before the heal). A deadline past the end of the run
//! is not judged.

use super::coo_history::{Registry, BROKER_TIMEOUT_MS};
use super::lease_timeline::{ClockFaults, RunTimeline};
use super::{violation_at_end, Violation};
use crate::sim::trace::{EventKind, TraceEvent};

pub const NAME: &str = "broker_expiry_live";

/// The expiry pass looks once a second on the leader's clock (one pass to see the
/// broker after an election, one more after its timeout ran out), and proposing,
/// committing and applying the expiry takes a few message delays on a healed
/// cluster: 1 s each.
pub const LIVE_GRACE_MS: u64 = 3_000;

/// `alive`: the brokers alive at the end of the run.
pub fn check(events: &[TraceEvent], alive: &[u64]) -> Result<(), Violation> {
    let registry = Registry::from_trace(events);
    let timeline = RunTimeline::from_trace(events, 0);
    let healed_ms = events.iter().find_map(|e| match &e.kind {
        EventKind::Fault { action } if action == "heal everything" => Some(e.time_ms),
        _ => None,
    });
    let stable_from_ms = timeline
        .elections
        .last()
        .map_or(0, |e| e.time_ms)
        .max(healed_ms.unwrap_or(0));
    let clocks = ClockFaults::from_trace(events);
    let last_election = timeline.elections.last().copied();
    for (broker, last) in &registry.registered {
        if alive.contains(broker) {
            continue;
        }
        // The final leader's count started at the later of the report and its
        // election; its clock set back since then delays the expiry as much.
        let backward_ms = last_election.map_or(0, |e| {
            clocks.backward_ms_on(e.node, last.time_ms.max(e.time_ms))
        });
        let due_ms =
            last.time_ms.max(stable_from_ms) + BROKER_TIMEOUT_MS + LIVE_GRACE_MS + backward_ms;
        if due_ms > timeline.end_ms {
            continue;
        }
        return Err(violation_at_end(
            NAME,
            events,
            format!(
                "broker {broker} stopped reporting (its last accepted report #{} at {} ms) and is not alive at the end, but is still registered at {} ms: leadership was stable from {stable_from_ms} ms, so it was due by {due_ms} ms",
                last.report_seq, last.time_ms, timeline.end_ms
            ),
        )
        .with_related([last.event]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::coo_history::testing::applied;
    use crate::sim::checkers::testing::History;

    #[test]
    fn fires_when_a_dead_broker_stays_registered_past_its_deadline() {
        let mut h = History::default();
        let mut lead = h.role(1, "leader", 2, 1);
        lead.time_ms = 500;
        let mut heal = h.push(
            0,
            EventKind::Fault {
                action: "heal everything".into(),
            },
        );
        heal.time_ms = 4_000;
        let mut events = vec![
            lead,
            applied(&mut h, 1, 1, 2, 1_000, "coo report broker=51 seq=1"),
            applied(&mut h, 1, 2, 2, 1_000, "coo report broker=52 seq=1"),
            heal,
            applied(&mut h, 1, 3, 2, 12_000, "coo report broker=52 seq=9"),
        ];
        // Broker 51 is dead; due by 4000 + 6000 + 3000 = 13000 ms.
        check(&events, &[52]).unwrap();
        events.push(applied(
            &mut h,
            1,
            4,
            2,
            13_500,
            "coo report broker=52 seq=10",
        ));
        let v = check(&events, &[52]).unwrap_err();
        assert!(v.message.contains("broker 51"), "{v}");
        assert!(v.message.contains("due by 13000 ms"), "{v}");
        // Expired in time: fine.
        events.insert(
            4,
            applied(&mut h, 1, 5, 2, 11_000, "coo expire broker=51 seq=1"),
        );
        check(&events, &[52]).unwrap();
    }
}
